"""Sequence packing: whole samples placed side by side in rows, kept isolated from each other.

A packed row holds several samples; position ids restart at 0 for each, a block-diagonal causal
mask stops attention from crossing samples, and the first label of each sample is ignored so the
shifted next-token loss never predicts one sample from the end of the previous one.

Example:
    >>> first_fit([5, 3, 4, 2], capacity=8)
    [[0, 1], [2, 3]]
    >>> block_causal_mask(torch.tensor([[0, 0, 1]]))[0, 0].int().tolist()
    [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from omnifuse.processing.chat import IGNORE_INDEX
from omnifuse.processing.grounding import GROUNDING_KEY
from omnifuse.processing.processor import EncodedSample

PADDING_SAMPLE = -1  # sample_index of padding tokens


def first_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Greedy first-fit: each sample (in input order) goes into the first row with room for it.

    Example:
        >>> first_fit([6, 6, 2], capacity=8)
        [[0, 2], [1]]
    """
    rows: list[list[int]] = []
    free: list[int] = []
    for index, length in enumerate(lengths):
        if length > capacity:
            raise ValueError(f"sample {index} has {length} tokens, more than the pack length {capacity}")
        row = next((r for r, room in enumerate(free) if room >= length), None)
        if row is None:
            rows.append([])
            free.append(capacity)
            row = len(rows) - 1
        rows[row].append(index)
        free[row] -= length
    return rows


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(batch, 1, L, L) bool mask, True where query i may attend key j: same segment and j <= i.

    Example:
        >>> block_causal_mask(torch.tensor([[0, 1, 1]]))[0, 0].int().tolist()
        [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    length = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    return (same & causal).unsqueeze(1)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The bool mask as eager attention adds it to the scores: 0 where allowed, the dtype's minimum elsewhere."""
    blocked = torch.tensor(torch.finfo(dtype).min, dtype=dtype)
    return torch.where(allowed, torch.zeros((), dtype=dtype), blocked)


@dataclass
class PackedRows:
    """Token-level tensors of a packed batch (padding: pad id, ignored label, its own segment)."""

    input_ids: torch.Tensor  # (rows, L)
    labels: torch.Tensor  # (rows, L)
    position_ids: torch.Tensor  # (rows, L), restarting at 0 for every sample
    segment_ids: torch.Tensor  # (rows, L), one id per sample within a row; the padding tail has its own
    sample_index: torch.Tensor  # (rows, L), the sample's index in the input batch; PADDING_SAMPLE on padding
    order: list[int]  # sample indices in row-major order (the order media must be concatenated in)
    grounding_xy: torch.Tensor | None = None  # (rows, L, 2) grounded box centres, -1 elsewhere; None: no region


def pack_samples(
    samples: Sequence[EncodedSample], indices: Sequence[int], capacity: int, pad_id: int, width: int | None = None
) -> PackedRows:
    """Place samples into rows by first-fit and build the row tensors.

    `indices[k]` is sample k's position in the caller's batch (kept in `sample_index`); rows are
    padded to `width` (default: the longest filled row).

    Example:
        >>> s = EncodedSample([5, 6, 7], [-100, 6, 7])
        >>> pack_samples([s, s], [0, 1], capacity=8, pad_id=0).position_ids.tolist()
        [[0, 1, 2, 0, 1, 2]]
    """
    rows = first_fit([len(s.input_ids) for s in samples], capacity)
    width = width or max(sum(len(samples[k].input_ids) for k in row) for row in rows)
    shape = (len(rows), width)
    packed = PackedRows(
        input_ids=torch.full(shape, pad_id, dtype=torch.long),
        labels=torch.full(shape, IGNORE_INDEX, dtype=torch.long),
        position_ids=torch.zeros(shape, dtype=torch.long),
        segment_ids=torch.zeros(shape, dtype=torch.long),
        sample_index=torch.full(shape, PADDING_SAMPLE, dtype=torch.long),
        order=[k for row in rows for k in row],
        grounding_xy=torch.full((*shape, 2), -1.0) if any(s.regions for s in samples) else None,
    )
    for r, row in enumerate(rows):
        start = 0
        for segment, k in enumerate(row):
            _place(packed, r, start, segment, samples[k], indices[k])
            start += len(samples[k].input_ids)
        # The padding tail is a segment of its own, so no attention row is empty (empty rows give NaN in SDPA).
        packed.segment_ids[r, start:] = len(row)
        packed.position_ids[r, start:] = torch.arange(width - start)
    packed.order = [indices[k] for k in packed.order]
    return packed


def _place(packed: PackedRows, row: int, start: int, segment: int, sample: EncodedSample, index: int) -> None:
    end = start + len(sample.input_ids)
    packed.input_ids[row, start:end] = torch.tensor(sample.input_ids)
    labels = torch.tensor(sample.labels)
    # The first token is never a target: predicting it would read the previous sample's last token.
    labels[0] = IGNORE_INDEX
    packed.labels[row, start:end] = labels
    packed.position_ids[row, start:end] = torch.arange(end - start)
    packed.segment_ids[row, start:end] = segment
    packed.sample_index[row, start:end] = index
    if packed.grounding_xy is not None:
        for token, centre in sample.regions.items():
            packed.grounding_xy[row, start + token] = torch.tensor(centre)


def flatten_rows(packed: PackedRows) -> dict[str, torch.Tensor]:
    """All samples in one padding-free row, the layout flash attention's varlen path reads from position_ids.

    transformers derives the per-sample boundaries (cu_seqlens) from position_ids only when the batch
    has a single row and no padding, hence one row of every sample and a mask of ones.
    """
    real = packed.sample_index != PADDING_SAMPLE
    out = {
        "input_ids": packed.input_ids[real].unsqueeze(0),
        "labels": packed.labels[real].unsqueeze(0),
        "position_ids": packed.position_ids[real].unsqueeze(0),
        "attention_mask": torch.ones(1, int(real.sum()), dtype=torch.long),
        "sample_index": packed.sample_index[real].unsqueeze(0),
    }
    if packed.grounding_xy is not None:
        out[GROUNDING_KEY] = packed.grounding_xy[real].unsqueeze(0)
    return out


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, sample_index: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each sample, indexed by `sample_index` (NaN for a sample with no targets).

    Works on padded and packed batches alike: the prediction at position t belongs to the sample of
    position t + 1, and padding (`sample_index == -1`) and ignored labels are skipped.

    Example:
        >>> logits = torch.zeros(1, 3, 4)  # uniform predictions: loss log(4) per token
        >>> per_sample_loss(logits, torch.tensor([[-100, 1, 2]]), torch.tensor([[0, 0, 0]]))
        tensor([1.3863])
    """
    vocab = logits.shape[-1]
    targets = labels[:, 1:].reshape(-1)
    owners = sample_index[:, 1:].reshape(-1).to(targets.device)
    keep = (targets != IGNORE_INDEX) & (owners != PADDING_SAMPLE)
    token_loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab)[keep].float(), targets[keep], reduction="none")
    count = int(sample_index.max()) + 1 if sample_index.numel() else 0
    sums = torch.zeros(count, device=token_loss.device).index_add_(0, owners[keep], token_loss)
    tokens = torch.zeros(count, device=token_loss.device).index_add_(0, owners[keep], torch.ones_like(token_loss))
    return sums / tokens
