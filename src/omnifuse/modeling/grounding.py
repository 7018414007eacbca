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

Example:
    >>> xy = torch.full((1, 3, 2), -1.0); xy[0, 1] = torch.tensor([0.9, 0.1])
    >>> grounding_targets(xy, bins=4)[0].tolist()  # column 3, row 0 at token 1
    [[3, 0]]
"""

from __future__ import annotations

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

    @classmethod
    def from_dict(cls, raw: dict[str, Any], num_layers: int) -> GroundingSettings:
        """Checked settings; raises ValueError naming the bad field."""
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"grounding: unknown field(s) {unknown}; expected layer, bins, weight")
        settings = cls(**raw)
        if not isinstance(settings.layer, int) or not 0 <= settings.layer <= num_layers:
            raise ValueError(f"grounding.layer must be an integer in [0, {num_layers}], got {settings.layer!r}")
        if not isinstance(settings.bins, int) or settings.bins < 2:
            raise ValueError(f"grounding.bins must be an integer >= 2, got {settings.bins!r}")
        if not isinstance(settings.weight, int | float) or not settings.weight > 0:
            raise ValueError(f"grounding.weight must be a positive number, got {settings.weight!r}")
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


__all__ = ["GroundingHead", "GroundingSettings", "grounding_hits", "grounding_loss_sum", "grounding_targets"]
