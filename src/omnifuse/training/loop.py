"""One optimizer step and one evaluation pass, over accelerate-prepared objects.

The loss of a step is the mean over every supervised token of the global batch (all micro-batches
of the accumulation window, on all ranks): each micro-batch contributes its summed token loss
divided by that global count. So gradient accumulation and DDP give the same update as one big
batch on one process, whatever the padding or the number of answer tokens per micro-batch.

Example:
    >>> metrics = optimizer_step(accelerator, model, optimizer, scheduler, batches, 1.0)  # doctest: +SKIP
    >>> metrics.loss, metrics.tokens  # doctest: +SKIP
    (2.31, 6144)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch import nn
from torch.utils.data import DataLoader, Dataset

from omnifuse.data.collator import is_empty_batch
from omnifuse.modeling.grounding import GroundingSettings, attention_loss_sum, grounding_loss_sum
from omnifuse.processing.chat import IGNORE_INDEX
from omnifuse.processing.grounding import GROUNDING_KEY
from omnifuse.training.checkpoint import SHARDED_TYPES
from omnifuse.training.lora import base_of
from omnifuse.training.schedule import rank_share
from omnifuse.training.supervised_head import supervised_loss_sum

Batch = dict[str, torch.Tensor]


@dataclass
class StepMetrics:
    loss: float | None  # mean loss per supervised token; None when the step was skipped
    tokens: int  # tokens processed by all ranks
    supervised: int  # supervised tokens of all ranks
    grad_norm: float | None = None


def supervised_tokens(batch: Batch) -> int:
    """Targets of the shifted next-token loss: labels after the first position that are not ignored."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def token_count(batch: Batch) -> int:
    """Tokens in the batch (a 4D packing mask covers whole rows, so rows count in full)."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None and mask.dim() == 2 else batch["input_ids"].numel()


def grounding_of(model: torch.nn.Module) -> tuple[torch.nn.Module, GroundingSettings, nn.Module] | None:
    """The omnifuse model's grounding head (or peft's trained copy of it), its settings and the omnifuse model
    itself, through DDP and peft wrappers; None without a head."""
    omni = base_of(getattr(model, "module", model))  # DistributedDataParallel keeps the model under .module
    head = getattr(omni, "grounding_head", None)
    return None if head is None else (head, omni.grounding_settings, omni)


def token_loss_sum(model: torch.nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
    """Summed next-token cross-entropy over the supervised tokens of one micro-batch (float32), plus the
    grounding head's loss (and its attention loss, with `attend_layer`) where the batch grounds phrases
    (`grounding_xy`) and the model has the head."""
    batch = send_to_device(dict(batch), device)
    targets = batch.pop(GROUNDING_KEY, None)
    grounding = grounding_of(model)
    grounded = grounding is not None and targets is not None
    hidden_states: list | None = [] if grounded else None
    attentions: list | None = [] if grounded and grounding[1].attend_layer is not None else None
    loss = _next_token_loss_sum(model, batch, hidden_states, attentions)
    if grounding is None:
        return loss
    head, settings, omni = grounding
    if hidden_states is None:  # nothing grounded here: zero gradients keep DDP's reducer complete
        return loss + sum(p.sum() * 0 for p in head.parameters() if p.requires_grad)
    loss = loss + grounding_loss_sum(head, settings, hidden_states, targets)
    if attentions is None:
        return loss
    return loss + attention_loss_sum(settings, attentions, batch["input_ids"], omni.image_placeholder_id(), targets)


def _next_token_loss_sum(
    model: torch.nn.Module, batch: Batch, hidden_states: list | None, attentions: list | None = None
) -> torch.Tensor:
    sparse = supervised_loss_sum(model, batch, hidden_states, attentions)  # head on supervised positions only
    if sparse is not None:
        return sparse
    labels = batch.pop("labels")
    out = model(
        **batch,
        use_cache=False,
        output_hidden_states=hidden_states is not None,
        output_attentions=attentions is not None,
    )
    if hidden_states is not None:
        hidden_states.extend(out.hidden_states)
    if attentions is not None:
        attentions.extend(out.attentions)
    vocab = out.logits.shape[-1]
    return F.cross_entropy(
        out.logits[:, :-1].reshape(-1, vocab).float(),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def optimizer_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    micro_batches: Sequence[Batch],
    max_grad_norm: float | None,
) -> StepMetrics:
    """Accumulate gradients over this rank's micro-batches, sync once, clip and step."""
    usable = [b for b in micro_batches if not is_empty_batch(b)]
    local = [sum(map(supervised_tokens, usable)), sum(map(token_count, usable)), len(usable)]
    everyone = accelerator.gather(torch.tensor([local], dtype=torch.float64, device=accelerator.device))
    supervised, tokens = int(everyone[:, 0].sum()), int(everyone[:, 1].sum())
    if supervised == 0 or everyone[:, 2].min() == 0:
        # Every rank skips together (the counts were shared), so no rank waits on a gradient sync.
        return StepMetrics(None, tokens, supervised)
    scale = accelerator.num_processes / supervised  # DDP averages over ranks; this turns it into a global sum
    loss_sum = torch.zeros((), device=accelerator.device)
    for k, batch in enumerate(usable):
        last = k == len(usable) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            loss = token_loss_sum(model, batch, accelerator.device) * scale
            accelerator.backward(loss)
        loss_sum += loss.detach()
    grad_norm = apply_update(accelerator, model, optimizer, scheduler, max_grad_norm)
    mean_loss = float(accelerator.reduce(loss_sum, "mean"))
    return StepMetrics(mean_loss, tokens, supervised, grad_norm)


def rank_loader(
    dataset: Dataset,
    global_batches: Sequence[list[int]],
    accelerator: Accelerator,
    collator,
    num_workers: int,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader over this rank's share of each global micro-batch, in the given order."""
    shares = [rank_share(b, accelerator.process_index, accelerator.num_processes) for b in global_batches]
    # Its own generator: an iterator otherwise draws from the global RNG, which a resumed run must not.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_sampler=shares, collate_fn=collator, num_workers=num_workers, generator=generator)


@torch.no_grad()
def evaluate(
    accelerator: Accelerator, model: torch.nn.Module, dataset: Dataset, collator, batch_size: int, num_workers: int
) -> float:
    """Mean loss per supervised token over the whole eval set (all ranks together)."""
    size = batch_size * accelerator.num_processes
    batches = [list(range(i, min(i + size, len(dataset)))) for i in range(0, len(dataset), size)]
    # DDP's wrapper may sync buffers in forward; evaluation runs the bare module (sharded ones need the wrapper).
    runner = model if accelerator.distributed_type in SHARDED_TYPES else accelerator.unwrap_model(model)
    was_training = runner.training
    runner.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for batch in rank_loader(dataset, batches, accelerator, collator, num_workers):
        if is_empty_batch(batch):
            continue
        text_only = {key: value for key, value in batch.items() if key != GROUNDING_KEY}  # eval loss: tokens only
        sums[0] += token_loss_sum(runner, text_only, accelerator.device).double()
        sums[1] += supervised_tokens(batch)
    runner.train(was_training)
    sums = accelerator.reduce(sums, "sum")
    return float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")


def apply_update(accelerator, model, optimizer, scheduler, max_grad_norm: float | None) -> float | None:
    """Clip (when asked), step the optimizer and the schedule, clear the gradients; returns the clipped norm."""
    grad_norm = None
    if max_grad_norm is not None:
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_grad_norm))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


__all__ = [
    "StepMetrics",
    "apply_update",
    "evaluate",
    "optimizer_step",
    "rank_loader",
    "supervised_tokens",
    "token_loss_sum",
]
