"""Cross-attention fusion (Flamingo, Mllama): media reach the LM through gated cross-attention blocks.

A modality with `fusion: cross_attention` keeps one marker token per unit (crop, frame, window) in
the text, and its projected features become the keys and values of blocks run in front of every
`cross_attention_every`-th decoder layer of the LM. Each block is `h + tanh(g_attn) * attn(h, media)`
then `h + tanh(g_ffn) * ffn(h)`, with both gates starting at 0, so a fresh composite computes exactly
the bare LM. Rows of a batch that hold no medium of the modality get no contribution at all.

The blocks hook the LM's own decoder layers (forward pre-hooks on the layer list found under the LM's
base model), so any causal LM family works with no per-family code and the LM's weights keep their
names. Keys and values are computed once per forward, and once per generation: at prefill they are
stored on the generation's cache object and reused by every decoding step.

Example:
    >>> model = OmniForConditionalGeneration.from_components(text=..., image=...,
    ...     modality_options={"image": {"fusion": "cross_attention", "cross_attention_every": 2}})
    >>> sorted(model.cross_attention.blocks["image"])  # decoder layers 0, 2, ... get a block
    ['0', '2']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from omnifuse.errors import ModalityError


class GatedCrossAttentionBlock(nn.Module):
    """Text hidden states attend to media features; tanh gates (init 0) scale what is added."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(hidden)
        self.memory_norm = nn.LayerNorm(hidden)
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, hidden, bias=False)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ffn_gate = nn.Parameter(torch.zeros(1))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        return x.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, media_tokens, hidden) -> keys and values (batch, heads, media_tokens, head_dim)."""
        memory = self.memory_norm(memory)
        return self._split(self.key(memory)), self._split(self.value(memory))

    def forward(self, hidden: torch.Tensor, memory: ModalityMemory, cache_key: str) -> torch.Tensor:
        keys, values = memory.keys_values(self, cache_key)
        query = self._split(self.query(self.attn_norm(hidden)).to(keys.dtype))
        attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=memory.attention_mask)
        attended = attended.transpose(1, 2).reshape(hidden.shape).to(hidden.dtype)
        rows = memory.row_mask.to(hidden.dtype)[:, None, None]  # rows without this modality get nothing
        hidden = hidden + torch.tanh(self.attn_gate) * self.out(attended) * rows
        return hidden + torch.tanh(self.ffn_gate) * self.ffn(self.ffn_norm(hidden)) * rows


@dataclass
class ModalityMemory:
    """One modality's projected media for a batch: padded per row, with the keys/values of each block."""

    features: torch.Tensor  # (batch, media_tokens, hidden), zeros where a row has fewer tokens
    key_mask: torch.Tensor  # (batch, media_tokens) True at real media tokens
    row_mask: torch.Tensor  # (batch,) True where the row holds at least one unit
    cached: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def attention_mask(self) -> torch.Tensor:
        # A row without media attends to its zero padding (finite; its output is then multiplied by 0).
        mask = self.key_mask | ~self.row_mask[:, None]
        return mask[:, None, None, :]

    def keys_values(self, block: GatedCrossAttentionBlock, cache_key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's keys/values, computed on first use and kept for the rest of the generation."""
        if cache_key not in self.cached:
            self.cached[cache_key] = block.keys_values(self.features)
        return self.cached[cache_key]


def decoder_layers(language_model: nn.Module) -> nn.ModuleList:
    """The LM's list of decoder layers: the ModuleList under its base model whose length is the layer count.

    Example:
        >>> len(decoder_layers(AutoModelForCausalLM.from_config(tiny_text_config("gpt2", layers=3))))
        3
    """
    count = language_model.config.num_hidden_layers
    base = getattr(language_model, "base_model", language_model)
    for module in base.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ModalityError(
        f"cross_attention fusion: no list of {count} decoder layers found in {type(language_model).__name__}"
    )


def attention_heads(text_config, hidden: int) -> int:
    """The LM's head count when it divides the width (it does for every family here), else 1."""
    heads = getattr(text_config, "num_attention_heads", 1) or 1
    return heads if hidden % heads == 0 else 1


class CrossAttentionFusion(nn.Module):
    """Every cross-attention modality's blocks (`blocks[name][layer]`) and the hooks that run them."""

    def __init__(self, config, language_model: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleDict()
        self.memory: dict[str, ModalityMemory] | None = None  # set by the model around each LM call
        hidden = config.text_config.hidden_size
        heads = attention_heads(config.text_config, hidden)
        specs = {n: s for n, s in config.modality_specs().items() if s.fusion == "cross_attention"}
        if not specs:
            return
        layers = decoder_layers(language_model)
        for name, spec in specs.items():
            indices = range(0, len(layers), spec.cross_attention_every)
            self.blocks[name] = nn.ModuleDict({str(i): GatedCrossAttentionBlock(hidden, heads) for i in indices})
        hooked = sorted({int(i) for blocks in self.blocks.values() for i in blocks})
        for index in hooked:
            hook = functools.partial(self._before_layer, str(index))  # deep-copies with the model
            layers[index].register_forward_pre_hook(hook, with_kwargs=True)

    def _before_layer(self, index: str, layer: nn.Module, args: tuple, kwargs: dict):
        if not self.memory:
            return None
        from_args = len(args) > 0
        hidden = args[0] if from_args else kwargs["hidden_states"]
        for name, memory in self.memory.items():
            if index in self.blocks[name]:
                hidden = self.blocks[name][index](hidden, memory, cache_key=index)
        if from_args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}


__all__ = ["CrossAttentionFusion", "GatedCrossAttentionBlock", "ModalityMemory", "decoder_layers"]
