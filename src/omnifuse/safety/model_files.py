"""Checks on what a model folder or recipe asks for before omnifuse acts on it: limits files, model sizes.

Example:
    >>> media_limits_from_json({"max_pixels": 1_000_000}, "omnifuse_processor.json").max_pixels
    1000000
    >>> media_limits_from_json({"max_pixels": -1}, "omnifuse_processor.json")
    Traceback (most recent call last):
    ...
    omnifuse.errors.FolderError: omnifuse_processor.json: limits.max_pixels must be a number in (0, 1073741824], got -1
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from omnifuse.errors import FolderError
from omnifuse.processing.media.errors import MediaLimits
from omnifuse.safety.limits import max_positions_of

# Upper ends of what a limits file may raise a bound to: past these a "limit" protects nothing.
LIMIT_CEILINGS: dict[str, float] = {
    "max_bytes": 2**32,
    "max_pixels": 2**30,
    "max_audio_seconds": 86_400,
    "max_video_seconds": 86_400,
    "max_video_frames": 10_000,
    "max_decoded_frames": 1_000_000,
    "max_text_chars": 100_000_000,
    "max_sequence_values": 2**32,
}


def media_limits_from_json(raw: Any, source: str) -> MediaLimits:
    """MediaLimits from a processor file's `limits` mapping; a bad, negative or absurd value is a FolderError."""
    if raw is None:
        return MediaLimits()
    if not isinstance(raw, dict):
        raise FolderError(f"{source}: limits must be a mapping of name to number, got {type(raw).__name__}")
    known = {f.name for f in fields(MediaLimits)}
    for name, value in raw.items():
        if name not in known:
            raise FolderError(f"{source}: unknown limit {name!r}; known: {', '.join(sorted(known))}")
        ceiling = LIMIT_CEILINGS[name]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not 0 < value <= ceiling:
            raise FolderError(f"{source}: limits.{name} must be a number in (0, {int(ceiling)}], got {value!r:.40}")
    return MediaLimits(**raw)


def positions_in_folder(folder: str | Path) -> int | None:
    """The language model's positions per the folder's config.json (None: no config or no stated limit)."""
    path = Path(folder) / "config.json"
    try:
        text_config = json.loads(path.read_text()).get("text_config") or {}
    except (OSError, ValueError, AttributeError):
        return None  # loading the model itself reports a broken config with its own error
    return max_positions_of(text_config)


def check_model_folder_files(folder: str | Path, what: str = "--model", need_processor: bool = True) -> None:
    """Refuse a model folder that lacks its config, weights, processor or tokenizer, before loading any of it.

    A LoRA adapter folder (adapter_config.json, no config.json) is checked for its adapter weights instead.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{what} {folder}: no such folder")
    adapter = (folder / "adapter_config.json").exists() and not (folder / "config.json").exists()
    needs = {
        "a config (config.json)": ["config.json"] if not adapter else ["adapter_config.json"],
        "weights (*.safetensors)": ["model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors"],
        "a processor (omnifuse_processor.json)": ["omnifuse_processor.json"],
        "a tokenizer (tokenizer.json or tokenizer_config.json)": ["tokenizer.json", "tokenizer_config.json"],
    }
    if not need_processor:
        needs = {name: files for name, files in needs.items() if "processor" not in name and "tokenizer" not in name}
    missing = [name for name, files in needs.items() if not any((folder / f).is_file() for f in files)]
    if missing:
        raise FolderError(
            f"{what} {folder}: incomplete model folder, missing {', '.join(missing)}; "
            "pass a folder written by omnifuse train or save_pretrained"
        )
    for name in ("config.json", "adapter_config.json", "omnifuse_processor.json"):
        _check_json_mapping(folder / name, what)


def _check_json_mapping(path: Path, what: str) -> None:
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FolderError(f"{what} {path}: not valid JSON ({' '.join(str(err).split())[:120]})") from None
    if not isinstance(data, dict):
        raise FolderError(f"{what} {path}: expected a JSON object, got {type(data).__name__}")


def physical_memory_bytes() -> int | None:
    """This machine's RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


__all__ = [
    "LIMIT_CEILINGS",
    "check_model_folder_files",
    "media_limits_from_json",
    "physical_memory_bytes",
    "positions_in_folder",
]
