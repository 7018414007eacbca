"""Content parts: which modality a part names, and where its medium is.

One grammar for every modality name, so a new modality needs no code here:

- `{"type": NAME, "path" | "url" | NAME | "array": ...}` (transformers' style; `sampling_rate` may
  accompany an in-memory audio array);
- `{"type": "NAME_url", "NAME_url": {"url": ...}}` (OpenAI's `image_url`, vLLM's `video_url`, ...);
- `{"type": "input_NAME", "input_NAME": {"data": BASE64, "format": ...}}` (OpenAI's `input_audio`).

Example:
    >>> part_modality("image_url"), part_modality("input_audio"), part_modality("depth")
    ('image', 'audio', 'depth')
"""

from __future__ import annotations

import base64
import re
from typing import Any

TEXT = "text"
_PART_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")


def part_modality(part_type: Any) -> str | None:
    """The modality (or kind) a media part type names; None for text or a type that is not a name."""
    if not isinstance(part_type, str) or part_type == TEXT or not _PART_TYPE.match(part_type):
        return None
    if part_type.startswith("input_"):
        return part_type[len("input_") :] or None
    if part_type.endswith("_url"):
        return part_type[: -len("_url")] or None
    return part_type


def source_problem(part: dict[str, Any]) -> str | None:
    """Why a media part has no usable source field, or None when it has one (nothing is read here)."""
    kind = part["type"]
    name = part_modality(kind)
    if kind.startswith("input_"):
        inner = part.get(kind)
        ok = isinstance(inner, dict) and isinstance(inner.get("data"), str) and inner["data"]
        return None if ok else f"{kind} part has no source (needs '{kind}': {{'data': BASE64, 'format': ...}})"
    if kind.endswith("_url"):
        inner = part.get(kind)
        url = inner.get("url") if isinstance(inner, dict) else inner
        return None if isinstance(url, str) and url else f"{kind} part has no source (needs '{kind}': {{'url': ...}})"
    return None if _direct_key(part) else f"{kind} part has no source (needs 'path', 'url' or '{name}')"


def _direct_key(part: dict[str, Any]) -> str | None:
    """The first of path / url / NAME / array that holds something."""
    name = part_modality(part["type"])
    return next((key for key in ("path", "url", name, "array") if _holds_something(part.get(key))), None)


def _holds_something(value: Any) -> bool:
    # No `value in (None, "")`: a numpy array compares elementwise.
    return value is not None and not (isinstance(value, str) and not value)


def part_source(part: dict[str, Any]) -> Any:
    """The medium inside a content part: a path, url, data URI, in-memory object or decoded base64.

    Raises ValueError naming what is missing (the processor turns it into a MediaError with the item).
    """
    problem = source_problem(part)
    if problem is not None:
        raise ValueError(problem)
    kind = part["type"]
    name = part_modality(kind)
    if kind.startswith("input_"):
        try:
            return base64.b64decode(part[kind]["data"], validate=True)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{kind} needs base64 'data': {err}") from err
    if kind.endswith("_url"):
        inner = part[kind]
        return inner["url"] if isinstance(inner, dict) else inner
    key = _direct_key(part)
    # In-memory audio may carry its own rate: {"type": "audio", "audio": array, "sampling_rate": 44100}
    rate = part.get("sampling_rate")
    return (part[key], rate) if rate is not None and key in (name, "array") else part[key]


__all__ = ["TEXT", "part_modality", "part_source", "source_problem"]
