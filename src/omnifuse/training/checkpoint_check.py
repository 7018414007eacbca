"""Is a checkpoint intact? Cheap structural checks before resuming, and the fallback to an older one.

A checkpoint can be complete (its COMPLETE marker written) and still be damaged later: a disk that
filled up, a copy cut short, a file edited by hand. Resuming from it would fail deep inside loading,
or load garbage. Each file is checked for what can be checked without loading it all: JSON parses,
a safetensors header covers the file exactly, a torch zip archive has its central directory.

Example:
    >>> latest_intact_checkpoint("runs/demo/checkpoints", warn=print)  # doctest: +SKIP
    warning: runs/demo/checkpoints/step-40 is damaged (model.safetensors: ...); resuming from step-20
    PosixPath('runs/demo/checkpoints/step-20')
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from safetensors import safe_open

from omnifuse.training.rng_state import RNG_SUFFIX, CheckpointError

_STEP_DIR = re.compile(r"^step-(\d+)$")
_JSON_FILES = ("trainer_state.json", "recipe.json", "config.json")
_TORCH_ZIPS = ("optimizer.pt", "scheduler.pt")
_LEGACY_PICKLES = "rng-*.pt"  # older omnifuse wrote RNG states as pickles: never loaded now


def check_checkpoint(folder: Path) -> None:
    """Raise CheckpointError naming the first file of `folder` that is missing or damaged."""
    for name in _JSON_FILES:
        try:
            json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{folder / name}: unreadable ({type(err).__name__})") from None
    if (folder / "accelerate").is_dir():
        return  # FSDP / DeepSpeed: accelerate's own sharded format, checked when it loads
    for path in [folder / "model.safetensors", *sorted(folder.glob(f"rng-*{RNG_SUFFIX}"))]:
        try:
            with safe_open(str(path), "pt") as handle:
                handle.keys()
        except Exception as err:  # noqa: BLE001 - the safetensors reader's own error types
            raise CheckpointError(f"{path}: damaged ({' '.join(str(err).split())[:160]})") from None
    for name in _TORCH_ZIPS:
        try:
            with zipfile.ZipFile(folder / name) as archive:
                archive.infolist()
        except (OSError, zipfile.BadZipFile) as err:
            raise CheckpointError(f"{folder / name}: damaged ({err})") from None


def latest_intact_checkpoint(root: str | Path, warn: Callable[[str], None]) -> Path | None:
    """The newest complete checkpoint that passes `check_checkpoint`; damaged newer ones are warned about.

    Raises CheckpointError when checkpoints exist but none is intact (resuming would lose the run silently).
    """
    root = Path(root)
    found = sorted(
        (int(m.group(1)), p)
        for p in (root.iterdir() if root.is_dir() else [])
        if (m := _STEP_DIR.match(p.name)) and (p / "COMPLETE").exists()
    )
    problems = []
    for _, folder in reversed(found):
        try:
            check_checkpoint(folder)
        except CheckpointError as err:
            problems.append(str(err))
            warn(f"warning: skipping damaged checkpoint {folder.name}: {err}")
            continue
        for legacy in sorted(folder.glob(_LEGACY_PICKLES)):
            warn(f"warning: {legacy} not loaded (pickle files can run code); random generators are reseeded")
        return folder
    if problems:
        raise CheckpointError(
            f"no intact checkpoint in {root} ({problems[0]}); delete {root} to start over, or restore a copy"
        )
    return None


__all__ = ["check_checkpoint", "latest_intact_checkpoint"]
