"""The training loss with the LM head applied only where a label is set.

A causal LM computes vocabulary logits at every position, but the loss reads only the supervised
ones (assistant answers); prompts, media placeholders and padding are thrown away after the
largest matmul of the step. Here the decoder runs as usual and the head runs on the supervised
hidden states only: the same summed cross-entropy and the same gradients, with less compute.

Only a bare `OmniForConditionalGeneration` whose LM is decoder + plain linear head qualifies; for
anything else (a DDP or peft wrapper, a head that rescales logits) `supervised_loss_sum` returns None
and the caller computes the loss the usual way.

Example:
    >>> total = supervised_loss_sum(model, batch)  # doctest: +SKIP
    >>> total / (batch["labels"][:, 1:] != -100).sum()  # equals model(**batch).loss  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnifuse.processing.chat import IGNORE_INDEX

TOKEN_KEYS = ("input_ids", "attention_mask", "labels", "position_ids", "sample_index")
# Config fields with which a ForCausalLM rescales or caps its logits after the head.
LOGIT_MODIFIERS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _split_lm(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    from omnifuse.modeling.model import OmniForConditionalGeneration

    if type(model) is not OmniForConditionalGeneration:
        return None
    lm = model.language_model
    config = lm.config
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_MODIFIERS):
        return None
    head = lm.get_output_embeddings()
    decoder = getattr(lm, lm.base_model_prefix, None)
    if not isinstance(head, nn.Linear) or decoder is None:
        return None
    return decoder, head


def supervised_loss_sum(
    model: nn.Module, batch: dict[str, torch.Tensor], hidden_states: list | None = None, attentions: list | None = None
) -> torch.Tensor | None:
    """Summed next-token cross-entropy (float32) over supervised tokens, or None when the model does not qualify.

    With a `hidden_states` (`attentions`) list, the decoder's per-layer hidden states (attention weights)
    are appended to it (for a grounding head)."""
    parts = _split_lm(model)
    if parts is None:
        return None
    decoder, head = parts
    input_ids, labels = batch["input_ids"], batch["labels"]
    media = {key: value for key, value in batch.items() if key not in TOKEN_KEYS}
    embeds = model.embed_inputs(input_ids, media)
    out = decoder(
        inputs_embeds=embeds,
        attention_mask=batch.get("attention_mask"),
        position_ids=batch.get("position_ids"),
        use_cache=False,
        output_hidden_states=hidden_states is not None,
        output_attentions=attentions is not None,
    )
    hidden = out.last_hidden_state
    if hidden_states is not None:
        hidden_states.extend(out.hidden_states)
    if attentions is not None:
        attentions.extend(out.attentions)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


__all__ = ["supervised_loss_sum"]
