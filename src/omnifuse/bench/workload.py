"""The benchmarks' inputs: a composite model of a named size, its LLaVA twin, and a realistic sample mix.

The mix is what instruction tuning sees: text-only chats, one image, several images; short and long
answers. Images are random pixels of mixed sizes (their content does not change the cost).

Example:
    >>> work = build_workload("tiny", seed=0)
    >>> samples = make_conversations(work, 4, seed=0)
    >>> len(samples), work.model.config.text_config.model_type
    (4, 'llama')
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import LlamaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.bench.common import SIZES, BenchError
from omnifuse.processing.tokenizer import build_bpe_tokenizer

# name: (vision hidden, layers, heads, image side, patch; LM hidden, layers, heads, ffn, vocab; tokenizer vocab)
SHAPES = {
    "tiny": dict(v_hidden=32, v_layers=2, v_heads=4, side=32, patch=8, hidden=64, layers=2, heads=4, ffn=128,
                 vocab=512, tok_vocab=400),
    "small": dict(v_hidden=384, v_layers=6, v_heads=6, side=128, patch=16, hidden=512, layers=6, heads=8, ffn=1376,
                  vocab=8192, tok_vocab=2000),
    "large": dict(v_hidden=768, v_layers=12, v_heads=12, side=224, patch=16, hidden=1024, layers=12, heads=16,
                  ffn=2816, vocab=32000, tok_vocab=2000),
}
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "he", "ja", "wu"]


@dataclass
class Workload:
    """A model, its processor and the size it was built at (`twin()` makes the LLaVA baseline)."""

    size: str
    model: OmniForConditionalGeneration
    processor: OmniProcessor
    words: list[str]

    def twin(self) -> LlavaForConditionalGeneration:
        """transformers' LlavaForConditionalGeneration with exactly this model's weights (via `export_llava`)."""
        from omnifuse.interop.llava import export_llava

        with tempfile.TemporaryDirectory() as folder:
            export_llava(self.model, folder, processor=self.processor)
            llava = LlavaForConditionalGeneration.from_pretrained(folder, dtype=self.model.dtype)
        return llava.to(self.model.device)

    def parameter_split(self) -> dict[str, int]:
        """Parameters of the vision side (encoder + projector) and of the LM, for the FLOP count."""
        total = sum(p.numel() for p in self.model.parameters())
        lm = sum(p.numel() for p in self.model.language_model.parameters())
        return {"vision": total - lm, "language_model": lm, "total": total}

    @property
    def image_tokens(self) -> int:
        shape = SHAPES[self.size]
        return (shape["side"] // shape["patch"]) ** 2


def make_words(count: int, seed: int) -> list[str]:
    """A made-up vocabulary of `count` distinct two-to-four-syllable words."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def build_workload(size: str, seed: int = 0, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> Workload:
    """The composite of `size` ("tiny" for CI, "small" ~10M vision + ~25M LM, "large" >= 100M), seeded."""
    if size not in SIZES:
        raise BenchError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    shape = SHAPES[size]
    words = make_words(600, seed)
    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(words) for _ in range(40)) + " ?" for _ in range(300)]
    tokenizer = build_bpe_tokenizer(corpus, vocab_size=shape["tok_vocab"])
    vision = SiglipVisionConfig(hidden_size=shape["v_hidden"], num_hidden_layers=shape["v_layers"],
                                num_attention_heads=shape["v_heads"], intermediate_size=4 * shape["v_hidden"],
                                image_size=shape["side"], patch_size=shape["patch"],
                                vision_use_head=False)  # LLaVA reads hidden states; the pooling head is dead weight
    text = LlamaConfig(hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                       num_attention_heads=shape["heads"], num_key_value_heads=shape["heads"],
                       intermediate_size=shape["ffn"], vocab_size=shape["vocab"], max_position_embeddings=4096,
                       tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = OmniForConditionalGeneration.from_components(
        text=text, image=vision, tokenizer=tokenizer, projector="mlp",
        modality_options={"image": {"feature_layer": -1, "select_strategy": "full"}},
    )
    model = model.to(device=device, dtype=dtype)
    processor = OmniProcessor.from_model_config(model.config, tokenizer)
    return Workload(size, model, processor, words)


def random_image(rng: np.random.Generator, low: int = 48, high: int = 640) -> Image.Image:
    """Random pixels of a random size in [low, high) on each side."""
    height, width = (int(v) for v in rng.integers(low, high, size=2))
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _sentence(rng: random.Random, words: list[str], low: int, high: int) -> str:
    return " ".join(rng.choice(words) for _ in range(rng.randint(low, high)))


def make_conversation(work: Workload, rng: random.Random, images: int, long_answer: bool,
                      image_rng: np.random.Generator) -> list[dict]:
    """One user turn (`images` images + a question) and one assistant answer, short or long."""
    scale = 0.25 if work.size == "tiny" else 1.0
    content = [{"type": "image", "image": random_image(image_rng)} for _ in range(images)]
    content.append({"type": "text", "text": _sentence(rng, work.words, 5, 40) + " ?"})
    low, high = (60, 160) if long_answer else (3, 12)
    answer = _sentence(rng, work.words, max(1, int(low * scale)), max(2, int(high * scale)))
    return [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def make_conversations(work: Workload, count: int, seed: int = 0) -> list[list[dict]]:
    """The realistic mix: 30% text-only, 40% one image, 30% two to four images; half the answers long."""
    rng = random.Random(seed)
    image_rng = np.random.default_rng(seed)
    conversations = []
    for _ in range(count):
        draw = rng.random()
        images = 0 if draw < 0.3 else 1 if draw < 0.7 else rng.randint(2, 4)
        conversations.append(make_conversation(work, rng, images, rng.random() < 0.5, image_rng))
    return conversations
