"""Grounding head: at a grounded phrase, the LM says which row and column of the picture the object is in.

Issue 17 found where binding is lost: the small LM does not learn to look up the object a question
names (with the lookup done for it, "is the red circle left of the blue square?" goes from ~40% to
100%). This head supervises the lookup directly, as RefCOCO-style grounding data does for real
models: at the last token of each grounded phrase (`omnifuse.processing.grounding`), a linear
layer on the hidden state after `layer` decoder layers classifies the box centre's column and row
into `bins` bins each. An early layer matters: the word's own state must fetch the object in one
attention hop, and the layers above then compare what it fetched (README "What mattered").

Enable it in the model config (`grounding: {layer: 1, bins: 4, weight: 1.0}`); the trainer adds
`weight` x the summed cross-entropy of both axes to the token loss. Inference never runs it.

With `attend_layer: L` the lookup itself is supervised too: the first attention head of decoder layer
`L` is trained to look, from each grounded token, at the image token of the cell that holds the
object's centre (`weight` x the summed negative log of that attention weight). The head above it then
learns *where* from a lookup that is already right, instead of discovering the lookup through it
(README "What mattered"). The LM then runs its eager attention, the one that returns attention weights.

Example:
    >>> xy = torch.full((1, 3, 2), -1.0); xy[0, 1] = torch.tensor([0.9, 0.1])
    >>> grounding_targets(xy, bins=4)[0].tolist()  # column 3, row 0 at token 1
    [[3, 0]]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GroundingSettings:
    layer: int = 1  # hidden state after this many decoder layers (0 = the input embeddings)
    bins: int = 4  # bins per axis
    weight: float = 1.0  # loss weight relative to the summed token loss
    attend_layer: int | None = None  # decoder layer whose first head is trained to look at the named object

    @classmethod
    def from_dict(cls, raw: dict[str, Any], num_layers: int) -> GroundingSettings:
        """Checked settings; raises ValueError naming the bad field."""
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"grounding: unknown field(s) {unknown}; expected layer, bins, weight, attend_layer")
        settings = cls(**raw)
        if not isinstance(settings.layer, int) or not 0 <= settings.layer <= num_layers:
            raise ValueError(f"grounding.layer must be an integer in [0, {num_layers}], got {settings.layer!r}")
        if not isinstance(settings.bins, int) or settings.bins < 2:
            raise ValueError(f"grounding.bins must be an integer >= 2, got {settings.bins!r}")
        if not isinstance(settings.weight, int | float) or not settings.weight > 0:
            raise ValueError(f"grounding.weight must be a positive number, got {settings.weight!r}")
        attend = settings.attend_layer
        if attend is not None and (not isinstance(attend, int) or not 0 <= attend < num_layers):
            raise ValueError(f"grounding.attend_layer must be an integer in [0, {num_layers - 1}], got {attend!r}")
        return settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GroundingHead(nn.Module):
    """Column and row logits (`bins` each) from hidden states: (..., hidden) -> (..., 2, bins)."""

    def __init__(self, settings: GroundingSettings, hidden: int):
        super().__init__()
        self.settings = settings
        self.linear = nn.Linear(hidden, 2 * settings.bins)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.linear(states).unflatten(-1, (2, self.settings.bins))


def grounding_targets(grounding_xy: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2) long column/row bins of the grounded tokens, and the (n, 2) (batch, token) index of each."""
    where = (grounding_xy[..., 0] >= 0).nonzero()
    xy = grounding_xy[where[:, 0], where[:, 1]]
    return (xy * bins).long().clamp(0, bins - 1), where


def _logits_at_grounded_tokens(
    head: nn.Module, settings: GroundingSettings, hidden_states: tuple[torch.Tensor, ...], grounding_xy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2, bins) head logits at the grounded tokens of layer `settings.layer`, and their (n, 2) target bins."""
    bins, where = grounding_targets(grounding_xy, settings.bins)
    return head(hidden_states[settings.layer][where[:, 0], where[:, 1]]), bins


def grounding_loss_sum(
    head: nn.Module, settings: GroundingSettings, hidden_states: tuple[torch.Tensor, ...], grounding_xy: torch.Tensor
) -> torch.Tensor:
    """`weight` x summed cross-entropy of both axes over every grounded token (float32).

    `head` is called, never reached into, so a peft `modules_to_save` wrapper routes to its trained copy.
    """
    logits, bins = _logits_at_grounded_tokens(head, settings, hidden_states, grounding_xy)
    loss = F.cross_entropy(logits.float().flatten(0, 1), bins.flatten(), reduction="sum")
    return loss * settings.weight


@torch.no_grad()
def grounding_hits(
    head: nn.Module, settings: GroundingSettings, hidden_states: tuple[torch.Tensor, ...], grounding_xy: torch.Tensor
) -> tuple[int, int]:
    """(grounded tokens whose column and row are both right, grounded tokens)."""
    logits, bins = _logits_at_grounded_tokens(head, settings, hidden_states, grounding_xy)
    return int((logits.argmax(-1) == bins).all(-1).sum()), len(bins)


def _last_image_before(is_placeholder: torch.Tensor, token: int) -> torch.Tensor:
    """Positions of the last run of consecutive placeholder tokens before `token` in one row."""
    positions = is_placeholder[:token].nonzero().flatten()
    if len(positions) == 0:
        raise ValueError(f"grounded token {token} follows no image tokens: its object has no picture to look at")
    breaks = (positions[1:] - positions[:-1] != 1).nonzero().flatten()
    return positions[int(breaks[-1]) + 1 :] if len(breaks) else positions


def looked_at_tokens(input_ids: torch.Tensor, placeholder_id: int, grounding_xy: torch.Tensor) -> torch.Tensor:
    """(n,) for each grounded token (in `grounding_targets` order): the position of the image token whose
    cell holds the object's centre, in the last image before it (its tokens a square grid, raster order)."""
    where = (grounding_xy[..., 0] >= 0).nonzero()
    looked_at = []
    for row, token in where.tolist():
        grid = _last_image_before(input_ids[row] == placeholder_id, token)
        side = math.isqrt(len(grid))
        if side * side != len(grid):
            raise ValueError(
                f"row {row}: the image before grounded token {token} has {len(grid)} tokens, not a square grid; "
                "grounding.attend_layer needs one token per cell"
            )
        column, line = (min(int(v * side), side - 1) for v in grounding_xy[row, token].tolist())
        looked_at.append(int(grid[line * side + column]))
    return torch.tensor(looked_at, dtype=torch.long, device=input_ids.device)


def _first_head_rows(
    settings: GroundingSettings,
    attentions: tuple[torch.Tensor, ...],
    input_ids: torch.Tensor,
    placeholder_id: int,
    grounding_xy: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, keys) attention of layer `attend_layer`'s first head from each grounded token, and the (n,)
    position of the image token each should look at. `attentions`: per layer (batch, heads, query, key)."""
    where = (grounding_xy[..., 0] >= 0).nonzero()
    rows = attentions[settings.attend_layer][where[:, 0], 0, where[:, 1]]
    return rows, looked_at_tokens(input_ids, placeholder_id, grounding_xy)


def attention_loss_sum(
    settings: GroundingSettings,
    attentions: tuple[torch.Tensor, ...],
    input_ids: torch.Tensor,
    placeholder_id: int,
    grounding_xy: torch.Tensor,
) -> torch.Tensor:
    """`weight` x summed -log(attention weight) of layer `attend_layer`'s first head, from each grounded token
    to the image token of its object's cell (float32)."""
    rows, keys = _first_head_rows(settings, attentions, input_ids, placeholder_id, grounding_xy)
    weights = rows[torch.arange(len(keys)), keys].float()
    return -weights.clamp_min(1e-6).log().sum() * settings.weight


@torch.no_grad()
def lookup_hits(
    settings: GroundingSettings,
    attentions: tuple[torch.Tensor, ...],
    input_ids: torch.Tensor,
    placeholder_id: int,
    grounding_xy: torch.Tensor,
) -> int:
    """Grounded tokens from which layer `attend_layer`'s first head looks hardest at the object's image token."""
    rows, keys = _first_head_rows(settings, attentions, input_ids, placeholder_id, grounding_xy)
    return int((rows.argmax(-1) == keys).sum())


__all__ = [
    "GroundingHead",
    "GroundingSettings",
    "attention_loss_sum",
    "grounding_hits",
    "grounding_loss_sum",
    "grounding_targets",
    "looked_at_tokens",
    "lookup_hits",
]
