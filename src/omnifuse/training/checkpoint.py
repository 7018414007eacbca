"""Atomic checkpoints and resume: model, optimizer, scheduler, RNG states and the data position.

A checkpoint is written to `checkpoints/.tmp-step-N`, completed with a `COMPLETE` marker (written
last), then renamed to `step-N` in one `os.replace`. A crash at any point leaves either a complete
`step-N` or a `.tmp-*` folder that is ignored and cleaned up, never a checkpoint that looks complete
but is not. Every checkpoint is taken right after an optimizer step of a stage, so resuming always
means: set the stage up again, load the states, continue at the saved data position.

Example:
    >>> path = latest_checkpoint("runs/demo/checkpoints")  # doctest: +SKIP
    >>> state = read_state(path); (state.stage, state.epoch, state.step_in_epoch)  # doctest: +SKIP
    (1, 0, 3)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from safetensors.torch import load_model, save_model

from omnifuse.training.checkpoint_check import latest_intact_checkpoint
from omnifuse.training.rng_state import CheckpointError, restore_rng_states, rng_file, save_rng_states

CHECKPOINT_DIR = "checkpoints"
COMPLETE = "COMPLETE"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SHARDED_DIR = "accelerate"  # FSDP / DeepSpeed: accelerate's own (sharded) state format
STEP_DIR = re.compile(r"^step-(\d+)$")
SHARDED_TYPES = (DistributedType.FSDP, DistributedType.DEEPSPEED)


@dataclass
class TrainerState:
    """Where training is and how it went: enough to continue exactly and to draw the whole loss curve."""

    stage: int = 0
    epoch: int = 0
    step_in_epoch: int = 0  # optimizer steps already taken in `epoch`
    stage_step: int = 0
    global_step: int = 0
    adapter_base: str | None = None  # a folder holding the weights a LoRA stage starts from
    world_size: int = 1
    train_samples: int = 0  # usable training records: the data order is a permutation of them
    history: list[list[float]] = field(default_factory=list)  # [global_step, train loss]
    eval_history: list[list[float]] = field(default_factory=list)  # [global_step, eval loss]
    stage_starts: list[int] = field(default_factory=list)  # global step at which each stage began
    data_mixture: dict[str, float | None] = field(default_factory=dict)  # an adaptive generated mix's state

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def save_checkpoint(
    accelerator: Accelerator,
    root: str | Path,
    state: TrainerState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    extra_files: Any = None,
    keep: int = 2,
) -> Path:
    """Write `root/step-<global_step>` atomically (every rank must call this); returns its path.

    `extra_files(folder)` runs on the main process to add files (e.g. the processor and model config).
    """
    root = Path(root)
    final = root / f"step-{state.global_step}"
    partial = root / f".tmp-step-{state.global_step}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _save_training_states(accelerator, partial, model, optimizer, scheduler)
    save_rng_states(rng_file(partial, accelerator.process_index))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if extra_files is not None:
            extra_files(partial)
        (partial / STATE_FILE).write_text(state.to_json())
        _write_synced(partial / COMPLETE, f"step {state.global_step}\n")
        _replace_dir(partial, final)
        prune_checkpoints(root, keep)
    accelerator.wait_for_everyone()
    return final


def _save_training_states(accelerator: Accelerator, folder: Path, model, optimizer, scheduler) -> None:
    if accelerator.distributed_type in SHARDED_TYPES:
        accelerator.save_state(str(folder / SHARDED_DIR))  # gathers or shards as the strategy needs
        return
    if accelerator.is_main_process:
        # DDP replicas are identical, so rank 0's model and optimizer state stand for all ranks.
        save_model(accelerator.unwrap_model(model), str(folder / WEIGHTS_FILE))
        torch.save(optimizer.state_dict(), folder / OPTIMIZER_FILE)
        torch.save(scheduler.state_dict(), folder / SCHEDULER_FILE)


def load_training_states(accelerator: Accelerator, folder: str | Path, model, optimizer, scheduler) -> None:
    """Restore what `save_checkpoint` wrote into the (already prepared) model, optimizer and scheduler."""
    folder = Path(folder)
    if accelerator.distributed_type in SHARDED_TYPES:
        accelerator.load_state(str(folder / SHARDED_DIR))
        return
    load_model(accelerator.unwrap_model(model), str(folder / WEIGHTS_FILE), device=str(accelerator.device))
    optimizer.load_state_dict(load_tensors_only(folder / OPTIMIZER_FILE, accelerator.device))
    scheduler.load_state_dict(load_tensors_only(folder / SCHEDULER_FILE))


def load_tensors_only(path: Path, device: Any = "cpu") -> Any:
    """torch.load restricted to tensors and plain containers: a pickled payload is refused, never run."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling refusals, truncation, bad zip: all mean "not ours"
        reason = " ".join(str(err).split())[:200]
        raise CheckpointError(f"{path}: refused to load ({type(err).__name__}: {reason})") from None


def read_state(folder: str | Path) -> TrainerState:
    return TrainerState.from_json((Path(folder) / STATE_FILE).read_text())


def complete_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints (with their marker), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and (p / COMPLETE).exists()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    done = complete_checkpoints(root)
    return done[-1] if done else None


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints; the marker goes first so none looks complete."""
    for old in complete_checkpoints(root)[:-keep]:
        (old / COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)


def remove_partial(root: str | Path) -> list[Path]:
    """Remove leftovers of interrupted saves (`.tmp-*`, and `step-*` without a marker); returns them."""
    root = Path(root)
    if not root.is_dir():
        return []
    stale = [
        p
        for p in root.iterdir()
        if p.name.startswith(".tmp-") or (STEP_DIR.match(p.name) and not (p / COMPLETE).exists())
    ]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_dir(partial: Path, final: Path) -> None:
    """Rename into place; an existing folder of that name (a rerun of the same step) is moved aside first."""
    if final.exists():
        aside = final.with_name(f".tmp-old-{final.name}")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)
        os.replace(partial, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(partial, final)
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the parent directory entry is flushed.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointError",
    "latest_intact_checkpoint",
    "rng_file",
    "TrainerState",
    "complete_checkpoints",
    "latest_checkpoint",
    "load_training_states",
    "prune_checkpoints",
    "read_state",
    "remove_partial",
    "restore_rng_states",
    "save_checkpoint",
]
