"""What a training run shows: a progress bar on stderr, TensorBoard scalars, and the loss-curve PNG.

Only the main process writes; the others get no-op objects. (Named `monitor`, not `logging`, so it
never shadows the standard library module.)

Example:
    >>> monitor = Monitor("runs/demo", enabled=True, first_step=0)  # doctest: +SKIP
    >>> monitor.start_stage("align", total=100, done=0)  # doctest: +SKIP
    >>> monitor.step(global_step=1, loss=2.3, lrs={"projectors": 1e-3}, tokens_per_s=5100.0)  # doctest: +SKIP
    >>> monitor.close(); plot_loss_curve(state, "runs/demo/loss_curve.png")  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

TENSORBOARD_DIR = "runs"


def log(message: str, enabled: bool = True) -> None:
    """One human-readable line on stderr (stdout is kept for the final JSON line)."""
    if enabled:
        tqdm.write(message, file=sys.stderr)


class Monitor:
    """Progress bar (loss, lr, tokens/s) and TensorBoard writer of one run."""

    def __init__(self, output_dir: str | Path, enabled: bool, first_step: int = 0) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.writer = _tensorboard_writer(Path(output_dir) / TENSORBOARD_DIR, first_step) if enabled else None

    def start_stage(self, title: str, total: int, done: int) -> None:
        if not self.enabled:
            return
        self.close_bar()
        self.bar = tqdm(total=total, initial=done, desc=title, unit="step", file=sys.stderr, dynamic_ncols=True)

    def step(
        self,
        global_step: int,
        loss: float | None,
        lrs: dict[str, float],
        tokens_per_s: float,
        record: bool = True,
        **extra: float | None,
    ) -> None:
        """Advance the bar by one optimizer step; with `record`, show and log its scalars."""
        if not self.enabled:
            return
        if self.bar is not None:
            if record and loss is not None:
                lr = max(lrs.values()) if lrs else 0.0
                self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            self.bar.update(1)
        if record and loss is not None:
            self.scalars(global_step, {"train/loss": loss, "train/tokens_per_s": tokens_per_s, **_prefixed(extra)})
            self.scalars(global_step, {f"train/lr/{group}": value for group, value in lrs.items()})

    def scalars(self, global_step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, global_step)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_bar()
        if self.writer is not None:
            self.writer.close()


def _prefixed(values: dict[str, float | None]) -> dict[str, float]:
    return {f"train/{key}": value for key, value in values.items() if value is not None}


def _tensorboard_writer(folder: Path, first_step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("tensorboard is not installed (pip install tensorboard): no TensorBoard logs for this run")
        return None
    # purge_step drops events a killed run wrote past the checkpoint we resume from.
    return SummaryWriter(log_dir=str(folder), purge_step=first_step or None)


def plot_loss_curve(
    history: list[list[float]],
    eval_history: list[list[float]],
    stage_starts: list[int],
    stage_names: list[str],
    path: str | Path,
) -> Path:
    """Training (and eval) loss per optimizer step, with a dashed line where each stage begins."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    if history:
        steps, losses = zip(*history)
        ax.plot(steps, losses, label="train loss", linewidth=1.2)
    if eval_history:
        steps, losses = zip(*eval_history)
        ax.plot(steps, losses, "o-", label="eval loss", linewidth=1.2)
    for start, name in zip(stage_starts, stage_names):
        ax.axvline(start, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(name, (start, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean per supervised token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


__all__ = ["Monitor", "log", "plot_loss_curve"]
