"""Projectors: map encoder features into the LM's embedding space. One module each, one registry.

Every projector takes `(batch, tokens, in_dim)` features with per-item valid lengths and returns
`(batch, out_tokens, out_dim)`; `output_length(n)` says how many of those rows are real for an item
with `n` valid input tokens. That function is the single place token counts come from, so the
processor can expand placeholders exactly.

Example:
    >>> proj = build_projector({"type": "pixel_shuffle", "factor": 2}, in_dim=32, out_dim=64, layout="grid")
    >>> proj.output_length(64)
    16
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn
from transformers.activations import ACT2FN

PROJECTORS: dict[str, type[Projector]] = {}


def register_projector(name: str):
    def wrap(cls: type[Projector]) -> type[Projector]:
        PROJECTORS[name] = cls
        cls.type_name = name
        return cls

    return wrap


def build_projector(spec: dict[str, Any], in_dim: int, out_dim: int, layout: str = "sequence") -> Projector:
    """Instantiate the projector a spec names (`{"type": "mlp", ...}`); `layout` is "grid" or "sequence".

    `"norm": true` in any spec adds a LayerNorm on the encoder features first: hidden states taken
    before the encoder's final norm (LLaVA's choice) can grow large enough to drown the content.
    """
    params = dict(spec)
    name = params.pop("type", "mlp")
    norm = params.pop("norm", False)
    if name not in PROJECTORS:
        raise ValueError(f"unknown projector {name!r}; available: {sorted(PROJECTORS)}")
    try:
        projector = PROJECTORS[name](in_dim=in_dim, out_dim=out_dim, layout=layout, **params)
    except TypeError as err:
        raise ValueError(f"projector {name!r}: bad parameters {params}: {err}") from err
    return NormalizedInput(projector, in_dim) if norm else projector


def lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch, max_len) bool mask, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def projector_output_length(spec: dict[str, Any], n_in: int, layout: str) -> int:
    """Rows a projector spec yields for an item with `n_in` valid feature tokens (no module needed)."""
    params = dict(spec)
    name = params.pop("type", "mlp")
    if name not in PROJECTORS:
        raise ValueError(f"unknown projector {name!r}; available: {sorted(PROJECTORS)}")
    return PROJECTORS[name].count_tokens(n_in, layout, params)


class Projector(nn.Module, ABC):
    """Base: subclasses implement `forward(features, lengths)`; `count_tokens` defaults to one row per token."""

    type_name = ""

    @staticmethod
    def count_tokens(n_in: int, layout: str, params: dict[str, Any]) -> int:
        return n_in

    def output_length(self, n_in: int) -> int:
        return self.count_tokens(n_in, self.layout, self.params)

    @abstractmethod
    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...


class NormalizedInput(Projector):
    """A projector behind a LayerNorm over its input features (see `build_projector`)."""

    def __init__(self, projector: Projector, in_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.projector = projector
        self.layout, self.params, self.type_name = projector.layout, projector.params, projector.type_name

    def output_length(self, n_in: int) -> int:
        return self.projector.output_length(n_in)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.projector(self.norm(features), lengths)


@register_projector("linear")
class LinearProjector(Projector):
    def __init__(self, in_dim: int, out_dim: int, layout: str = "sequence", bias: bool = True):
        super().__init__()
        self.layout, self.params = layout, {}
        self.linear = nn.Linear(in_dim, out_dim, bias=bias)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


@register_projector("mlp")
class MLPProjector(Projector):
    """LLaVA's projector: linear -> activation -> linear (names match transformers' for export)."""

    def __init__(
        self, in_dim: int, out_dim: int, layout: str = "sequence", hidden_act: str = "gelu", bias: bool = True
    ):
        super().__init__()
        self.layout, self.params = layout, {}
        self.linear_1 = nn.Linear(in_dim, out_dim, bias=bias)
        self.act = ACT2FN[hidden_act]
        self.linear_2 = nn.Linear(out_dim, out_dim, bias=bias)
        self.hidden_act = hidden_act

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


@register_projector("pixel_shuffle")
class PixelShuffleProjector(Projector):
    """Merge `factor`x`factor` neighbouring patches (grid) or `factor` consecutive frames (sequence), then MLP."""

    DEFAULT_FACTOR = 2

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        layout: str = "grid",
        factor: int = DEFAULT_FACTOR,
        hidden_act: str = "gelu",
    ):
        super().__init__()
        if layout not in ("grid", "sequence"):
            raise ValueError(f"pixel_shuffle layout must be 'grid' or 'sequence', got {layout!r}")
        self.layout, self.factor, self.params = layout, factor, {"factor": factor}
        merged = factor * factor if layout == "grid" else factor
        self.mlp = MLPProjector(in_dim * merged, out_dim, hidden_act=hidden_act)

    @staticmethod
    def count_tokens(n_in: int, layout: str, params: dict[str, Any]) -> int:
        factor = params.get("factor", PixelShuffleProjector.DEFAULT_FACTOR)
        if layout == "sequence":
            return math.ceil(n_in / factor)
        side = math.isqrt(n_in)
        if side * side != n_in or side % factor:
            raise ValueError(f"pixel_shuffle needs a square grid whose side divides by {factor}; got {n_in} tokens")
        return n_in // (factor * factor)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.layout == "grid":
            self.output_length(features.shape[1])  # validates the grid
        return self.mlp(merge_neighbours(features, self.factor, self.layout), lengths)


def merge_neighbours(features: torch.Tensor, factor: int, layout: str) -> torch.Tensor:
    """Concatenate each `factor`x`factor` patch block (grid, row-major) or `factor` consecutive frames.

    (batch, n, dim) -> (batch, n / factor**2, factor**2 * dim) for a square grid; a sequence is
    zero-padded to a multiple of `factor` first.
    """
    batch, n, dim = features.shape
    if layout == "sequence":
        pad = (-n) % factor
        features = nn.functional.pad(features, (0, 0, 0, pad))
        return features.reshape(batch, (n + pad) // factor, factor * dim)
    side = math.isqrt(n)
    blocks = features.reshape(batch, side // factor, factor, side // factor, factor, dim)
    return blocks.permute(0, 1, 3, 2, 4, 5).reshape(batch, (side // factor) ** 2, factor * factor * dim)


def merge_frames(features: torch.Tensor, frames: int) -> torch.Tensor:
    """Put each cell of `frames` consecutive frames side by side: (units, n, dim) -> (units / frames, n, frames * dim).

    Units are frames in time order (a clip's frame count is a multiple of `frames`; the processor pads it).

    Example:
        >>> merge_frames(torch.arange(4.0).reshape(4, 1, 1), 2).tolist()
        [[[0.0, 1.0]], [[2.0, 3.0]]]
    """
    if frames == 1:
        return features
    units, n, dim = features.shape
    if units % frames:
        raise ValueError(f"{units} frames cannot be merged in groups of {frames}; build inputs with the processor")
    return features.reshape(units // frames, frames, n, dim).transpose(1, 2).reshape(units // frames, n, frames * dim)


class _AttentionBlock(nn.Module):
    """Pre-norm cross-attention (queries -> keys) then a feed-forward, both residual."""

    def __init__(self, dim: int, heads: int, self_attend: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True) if self_attend else None
        self.norm_self = nn.LayerNorm(dim) if self_attend else None
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
        if self.self_attn is not None:
            q = self.norm_self(queries)
            queries = queries + self.self_attn(q, q, q, need_weights=False)[0]
        q = self.norm_q(queries)
        kv = self.norm_kv(keys)
        queries = queries + self.cross_attn(q, kv, kv, key_padding_mask=key_padding, need_weights=False)[0]
        return queries + self.ff(self.norm_ff(queries))


class _LearnedQueryProjector(Projector):
    """Shared machinery: a fixed set of learned queries attends to the (masked) features."""

    perceiver_keys = False
    count_param = ""
    DEFAULT_QUERIES = 16

    @classmethod
    def count_tokens(cls, n_in: int, layout: str, params: dict[str, Any]) -> int:
        return params.get(cls.count_param, cls.DEFAULT_QUERIES)

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, depth: int, heads: int, dim: int | None):
        super().__init__()
        dim = dim or out_dim
        if dim % heads:
            raise ValueError(f"attention width {dim} must divide by heads={heads}")
        self.num_queries, self.layout, self.params = num_queries, "sequence", {self.count_param: num_queries}
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.input_proj = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(
            _AttentionBlock(dim, heads, self_attend=not self.perceiver_keys) for _ in range(depth)
        )
        self.out_norm = nn.LayerNorm(dim)
        self.output_proj = nn.Linear(dim, out_dim)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        keys = self.input_proj(features)
        padding = ~lengths_mask(lengths, keys.shape[1])
        queries = self.queries.unsqueeze(0).expand(keys.shape[0], -1, -1)
        for block in self.blocks:
            if self.perceiver_keys:
                # Flamingo's resampler: latents attend to features and to themselves in one softmax.
                kv = torch.cat([keys, queries], dim=1)
                pad = torch.cat([padding, padding.new_zeros(queries.shape[:2])], dim=1)
                queries = block(queries, kv, pad)
            else:
                queries = block(queries, keys, padding)
        return self.output_proj(self.out_norm(queries))


@register_projector("perceiver")
class PerceiverResampler(_LearnedQueryProjector):
    """Perceiver resampler: `num_latents` learned latents, so every item yields a fixed token count."""

    perceiver_keys = True
    count_param = "num_latents"

    def __init__(self, in_dim, out_dim, layout="sequence", num_latents=16, depth=2, heads=4, dim=None):
        super().__init__(in_dim, out_dim, num_latents, depth, heads, dim)


@register_projector("qformer")
class QFormerProjector(_LearnedQueryProjector):
    """Q-Former-style: learned queries self-attend, then cross-attend to the features, per block."""

    count_param = "num_queries"

    def __init__(self, in_dim, out_dim, layout="sequence", num_queries=16, depth=2, heads=4, dim=None):
        super().__init__(in_dim, out_dim, num_queries, depth, heads, dim)
