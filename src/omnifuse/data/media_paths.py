"""Media paths in datasets: made absolute under the dataset's folder, never escaping it.

A path that leaves the folder after resolution (`..`, an absolute path elsewhere, a symlink out)
or does not exist is a DatasetFormatError naming the record and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from omnifuse.data.formats import SCHEME, DatasetFormatError
from omnifuse.processing.parts import TEXT, part_modality


def resolve_media_paths(messages: list[dict], base_dir: Path, *, source: str, root: Path | None = None) -> list[dict]:
    """Return messages whose local media references are absolute paths inside ``root``.

    Relative paths are taken from ``base_dir``; ``root`` (default: ``base_dir``) is the folder
    that media may never leave, symlinks included. ``data:`` and http(s) URLs are left as they are.

    Example:
        >>> msgs = [{"role": "user", "content": [{"type": "image", "path": "../secret.png"}]}]
        >>> resolve_media_paths(msgs, Path("/data"), source="a.jsonl:1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        omnifuse.data.formats.DatasetFormatError: a.jsonl:1: messages[0].content[0].path: ...
    """
    root = Path(root if root is not None else base_dir).resolve()
    out = []
    for i, msg in enumerate(messages):
        content = msg.get("content")
        if isinstance(content, list):
            where = f"messages[{i}].content"
            content = [_resolve_part(p, base_dir, root, f"{where}[{j}]", source) for j, p in enumerate(content)]
        out.append({**msg, "content": content})
    return out


def _resolve_part(part: Any, base_dir: Path, root: Path, where: str, source: str) -> Any:
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    name = part_modality(kind)
    if name is None or kind == TEXT or kind.startswith("input_"):
        return part  # text, or inline base64 data: nothing on disk
    if kind.endswith("_url") and isinstance(part.get(kind), dict):
        local = _local_path(part[kind].get("url"))
        if local is None:
            return part
        return {"type": name, "path": _checked_path(local, base_dir, root, f"{where}.{kind}.url", source)}
    for key in ("path", "url", name):
        value = part.get(key)
        local = value if key == "path" else _local_path(value)
        if isinstance(local, str):
            rest = {k: v for k, v in part.items() if k != key}
            return {**rest, "path": _checked_path(local, base_dir, root, f"{where}.{key}", source)}
    return part


def _local_path(value: Any) -> str | None:
    """The file path a URL-ish string names, or None when it is not a local file (data:, http, bytes)."""
    if not isinstance(value, str):
        return None
    if not SCHEME.match(value):
        return value
    parsed = urlparse(value)
    if parsed.scheme.lower() != "file":
        return None
    # file://host/x would name another machine; only local file URLs make sense in a dataset.
    return unquote(parsed.path) if parsed.netloc in ("", "localhost") else value


def _checked_path(path: str, base_dir: Path, root: Path, where: str, source: str) -> str:
    try:
        resolved = (Path(base_dir) / path).resolve()
    except (OSError, ValueError) as err:
        raise DatasetFormatError(f"invalid media path {path!r}: {err}", source=source, field=where) from None
    if not resolved.is_relative_to(root):
        raise DatasetFormatError(
            f"media path {path!r} resolves to {resolved}, outside the media folder {root}; "
            "keep media inside the dataset folder or set media_dir",
            source=source,
            field=where,
        )
    if not resolved.is_file():
        raise DatasetFormatError(f"media file {path!r} not found (looked at {resolved})", source=source, field=where)
    return str(resolved)
