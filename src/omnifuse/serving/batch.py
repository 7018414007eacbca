"""The running batch of a continuous-batching engine: one KV cache whose rows join and leave between steps.

Rows are left-padded to a common cache length; the attention mask marks real tokens, and each row's
next position is its count of real tokens, so a row decodes exactly as it would alone.

Example:
    >>> batch = RunningBatch()
    >>> batch.add(cache, mask, last_tokens=[7])   # prefilled requests join
    >>> ids, mask, positions = batch.step_inputs()
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    # (batch, heads, length, dim) -> (batch, heads, width, dim), zeros on the left.
    missing = width - tensor.shape[-2]
    if missing <= 0:
        return tensor
    pad = tensor.new_zeros((*tensor.shape[:-2], missing, tensor.shape[-1]))
    return torch.cat([pad, tensor], dim=-2)


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([mask.new_zeros((mask.shape[0], width - mask.shape[1])), mask], dim=1)


def _cache_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


class RunningBatch:
    """KV cache, attention mask and last sampled token of every decoding row, in row order."""

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long)
        self.last_tokens = torch.zeros((0,), dtype=torch.long)

    def __len__(self) -> int:
        return int(self.last_tokens.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def add(self, cache: DynamicCache, mask: torch.Tensor, last_tokens: list[int]) -> None:
        """Append prefilled rows: their cache, its attention mask (N, length) and each row's sampled token
        (not yet in the cache)."""
        tokens = torch.tensor(last_tokens, dtype=torch.long)
        if self.cache is None or len(self) == 0:
            self.cache, self.mask, self.last_tokens = cache, mask, tokens
            return
        width = max(self.width, mask.shape[1])
        for layer, (keys, values) in zip(self.cache.layers, _cache_tensors(cache)):
            layer.keys = torch.cat([_left_pad(layer.keys, width), _left_pad(keys, width)], dim=0)
            layer.values = torch.cat([_left_pad(layer.values, width), _left_pad(values, width)], dim=0)
        self.mask = torch.cat([_left_pad_mask(self.mask, width), _left_pad_mask(mask, width)], dim=0)
        self.last_tokens = torch.cat([self.last_tokens, tokens])

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_ids (B, 1), attention mask (B, width + 1) and position ids (B, 1) of the next step."""
        positions = self.mask.sum(dim=1, keepdim=True)
        mask = torch.cat([self.mask, torch.ones((len(self), 1), dtype=torch.long)], dim=1)
        return self.last_tokens[:, None], mask, positions

    def advance(self, mask: torch.Tensor, next_tokens: torch.Tensor) -> None:
        """Record a finished step: the mask it used (now the cache's) and the tokens it sampled."""
        self.mask = mask
        self.last_tokens = next_tokens

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (in that order), then drop cache columns that are padding in every row."""
        if len(rows) == len(self):
            return
        index = torch.tensor(rows, dtype=torch.long)
        self.mask = self.mask[index]
        self.last_tokens = self.last_tokens[index]
        if not rows:
            self.cache, self.mask = None, torch.zeros((0, 0), dtype=torch.long)
            return
        start = int(self.mask.any(dim=0).long().argmax())  # first column some row still uses
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
