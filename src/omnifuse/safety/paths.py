"""Where omnifuse may write: never a filesystem root, home itself or a system folder, never a model it reads
from, and never over someone else's files without an explicit overwrite.

A folder is a run's own output when it holds the marker that run writes first (`checkpoints/` for
`omnifuse train`), so rerunning or resuming a run needs no flag, while pointing a run at an existing
model folder does.

Example:
    >>> check_output_dir("/", what="output_dir")
    Traceback (most recent call last):
    ...
    omnifuse.errors.OutputPathError: output_dir /: refusing to write into the filesystem root; ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from omnifuse.errors import OutputPathError

# Folders (and everything below them) that belong to the operating system.
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/sbin",
    "/sys",
    "/usr",
)
_ADVICE = "choose a new folder of its own (e.g. runs/NAME)"


def check_output_dir(
    path: str | Path,
    *,
    what: str,
    overwrite: bool = False,
    own_marker: str | None = None,
    protected: Iterable[str | Path | None] = (),
) -> Path:
    """Refuse an output folder that is unsafe to write; returns it resolved.

    Refused always: a filesystem root, a top-level folder, home itself, a system folder or anything in
    one, a file, an unwritable place, and any folder in `protected` (the models this job reads) or above
    one. Refused unless `overwrite`: a non-empty folder that does not hold `own_marker`.
    """
    target = Path(path).expanduser().resolve()
    label = f"{what} {path}"
    refuse_system_location(target, label)
    for source in protected:
        if source is None or not Path(source).exists():
            continue
        base = Path(source).expanduser().resolve()
        if target == base or target in base.parents:
            raise OutputPathError(f"{label}: would write over the model it reads ({base}); {_ADVICE}")
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{label}: is a file, not a folder; {_ADVICE}")
    if target.is_dir() and any(target.iterdir()):
        own = own_marker is not None and (target / own_marker).is_dir()
        if not own and not overwrite:
            raise OutputPathError(
                f"{label}: the folder is not empty and is not this job's own output; {_ADVICE}, "
                "or allow replacing its files explicitly (--overwrite / recipe `overwrite: true`)"
            )
    check_writable(target, label)
    return target


def refuse_system_location(target: Path, label: str) -> None:
    """Refuse `/`, `/x`, home itself and system trees (`target` already resolved)."""
    if target == Path(target.anchor):
        raise OutputPathError(f"{label}: refusing to write into the filesystem root; {_ADVICE}")
    if target == Path.home().resolve():
        raise OutputPathError(f"{label}: refusing to write into the home folder itself; {_ADVICE}")
    if target.parent == Path(target.anchor):
        raise OutputPathError(f"{label}: refusing to write into the top-level folder {target}; {_ADVICE}")
    for tree in SYSTEM_TREES:
        if target == Path(tree) or Path(tree) in target.parents:
            raise OutputPathError(f"{label}: refusing to write inside the system folder {tree}; {_ADVICE}")


def check_writable(target: Path, label: str) -> None:
    """The folder, or the nearest existing folder above it, must be a writable folder."""
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{label}: {existing} is a file, so no folder can be made below it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{label}: {existing} is not writable")


def make_output_dir(target: Path, label: str, marker: str | None = None) -> None:
    """Create the folder (and the run's own marker in it); permission problems become OutputPathError."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        if marker is not None:
            (target / marker).mkdir(exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"{label}: cannot create the folder ({err.strerror or err})") from None


__all__ = ["SYSTEM_TREES", "check_output_dir", "check_writable", "make_output_dir", "refuse_system_location"]
