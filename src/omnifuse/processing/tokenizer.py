"""Offline tokenizers: a small byte-level BPE trained on a corpus, with chat and placeholder tokens.

No tokenizer can be downloaded here, so the demo and the tests train their own in a second.

Example:
    >>> tok = build_bpe_tokenizer(["what color is the circle?", "red"], vocab_size=400)
    >>> tok.convert_tokens_to_ids("<image>") < len(tok)
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, TURN_START, TURN_END = "<|pad|>", "<|bos|>", "<|im_start|>", "<|im_end|>"
CHAT_TOKENS = (PAD, BOS, TURN_START, TURN_END)
DEFAULT_PLACEHOLDERS = ("<image>", "<video>", "<audio>")


def chat_template() -> str:
    """A ChatML-style Jinja template.

    The processor hands templates text parts only (media parts become their placeholder token after
    rendering), so this one needs no per-modality branch. Called directly by the tokenizer, a media part
    renders as `<name>` (its type without `input_` / `_url`), which is the default placeholder.
    """
    media = (
        "{%- else -%}{{ '<' ~ (part['type'] | replace('input_', '', 1) | replace('_url', '')) ~ '>' }}"
    )
    return (
        "{%- for message in messages -%}"
        f"{TURN_START}{{{{ message['role'] + '\\n' }}}}"
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'text' -%}{{ part['text'] }}"
        f"{media}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
        f"{TURN_END}{{{{ '\\n' }}}}"
        "{%- endfor -%}"
        f"{{%- if add_generation_prompt -%}}{TURN_START}{{{{ 'assistant\\n' }}}}{{%- endif -%}}"
    )


def build_bpe_tokenizer(
    corpus: Iterable[str],
    vocab_size: int = 512,
    placeholders: Sequence[str] = DEFAULT_PLACEHOLDERS,
    extra_special_tokens: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (every byte is in the alphabet, so no text is ever unknown)."""
    specials = [*CHAT_TOKENS, *placeholders, *extra_special_tokens]
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    model.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=TURN_END,
        extra_special_tokens=list(placeholders) + list(extra_special_tokens),
    )
    tokenizer.chat_template = chat_template()
    return tokenizer
