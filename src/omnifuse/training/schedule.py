"""Data order and step schedule of a stage: seeded per-epoch order, global batches, warmup + cosine.

The order of epoch `e` of stage `s` depends only on (seed, s, e), so a resumed run re-creates it and
skips ahead by index, without reading the data it already trained on. A global micro-batch holds
`batch_size * world_size` samples; each rank trains on its contiguous share, so a run on N processes
sees the same samples per optimizer step as one process with N times the batch size.

Example:
    >>> plan = StagePlan(num_samples=40, batch_size=4, grad_accum=1, world_size=1, seed=0, stage_index=0)
    >>> plan.steps_per_epoch, len(plan.micro_batches(epoch=0)[0])
    (10, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_cosine_schedule_with_warmup, get_wsd_schedule

from omnifuse.training.recipe import StageSection


@dataclass(frozen=True)
class StagePlan:
    """How a stage walks over its data: micro-batches per epoch, optimizer steps, epochs needed."""

    num_samples: int
    batch_size: int
    grad_accum: int
    world_size: int
    seed: int
    stage_index: int
    max_steps: int | None = None
    epochs: float | None = None

    @classmethod
    def for_stage(cls, stage: StageSection, num_samples: int, world_size: int, seed: int, index: int) -> StagePlan:
        return cls(
            num_samples,
            stage.batch_size,
            stage.grad_accum,
            world_size,
            seed,
            index,
            max_steps=stage.max_steps,
            epochs=stage.epochs,
        )

    @property
    def global_micro_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def micro_batches_per_epoch(self) -> int:
        full, rest = divmod(self.num_samples, self.global_micro_batch)
        # A trailing batch too small to give every rank a sample is dropped (DDP needs all ranks busy).
        return full + (1 if rest >= self.world_size else 0)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / self.grad_accum)

    @property
    def total_steps(self) -> int:
        by_epochs = math.ceil(self.epochs * self.steps_per_epoch) if self.epochs is not None else None
        candidates = [n for n in (by_epochs, self.max_steps) if n is not None]
        return max(1, min(candidates))

    @property
    def epochs_needed(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def order(self, epoch: int) -> list[int]:
        """The sample order of one epoch, a permutation seeded by (seed, stage, epoch)."""
        generator = torch.Generator().manual_seed(_mix(self.seed, self.stage_index, epoch))
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def micro_batches(self, epoch: int) -> list[list[int]]:
        """Global micro-batches (sample indices) of an epoch, in training order."""
        order, size = self.order(epoch), self.global_micro_batch
        return [order[i : i + size] for i in range(0, len(order), size)][: self.micro_batches_per_epoch]

    def step_windows(self, epoch: int) -> list[range]:
        """Micro-batch index ranges that make up each optimizer step (the last one may be shorter)."""
        n, k = self.micro_batches_per_epoch, self.grad_accum
        return [range(start, min(start + k, n)) for start in range(0, n, k)]


def rank_share(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's contiguous slice of a global micro-batch (sizes differ by at most one).

    Example:
        >>> [rank_share([10, 11, 12, 13, 14], r, 2) for r in range(2)]
        [[10, 11, 12], [13, 14]]
    """
    per, extra = divmod(len(batch), world_size)
    start = rank * per + min(rank, extra)
    return batch[start : start + per + (1 if rank < extra else 0)]


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float, decay_ratio: float | None = None
) -> LambdaLR:
    """Linear warmup over `warmup_ratio` of the steps, then cosine decay to zero: over all the remaining
    steps, or (`decay_ratio`, warmup-stable-decay) over the last `decay_ratio` of them after a constant peak.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = make_scheduler(opt, 10, 0.0, decay_ratio=0.2)
        >>> [round(float(sched.lr_lambdas[0](step)), 2) for step in (0, 7, 8, 9, 10)]
        [1.0, 1.0, 1.0, 0.5, 0.0]
    """
    warmup = round(warmup_ratio * total_steps)
    if decay_ratio is None:
        return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    decay = max(1, round(decay_ratio * total_steps))
    return get_wsd_schedule(
        optimizer, num_warmup_steps=warmup, num_decay_steps=decay, num_stable_steps=max(0, total_steps - warmup - decay)
    )


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (so (seed, stage, epoch) never collide like seed + epoch would)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 31
    return state & 0x7FFFFFFFFFFFFFFF


__all__ = ["StagePlan", "make_scheduler", "rank_share"]
