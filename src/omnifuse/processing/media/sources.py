"""Reading a path, ``data:`` URI, bytes or binary file object into bytes, within the byte limit."""

from __future__ import annotations

import base64
import binascii
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from omnifuse.processing.media.errors import MediaError, MediaLimits

_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]{64,}")


def read_source_bytes(source: Any, *, kind: str, item: str = "", limits: MediaLimits = MediaLimits()) -> bytes:  # noqa: B008
    """Read a path, ``data:`` URI, bytes or binary file object into bytes, within ``limits.max_bytes``.

    Example:
        >>> read_source_bytes("data:text/plain;base64,aGk=", kind="image")
        b'hi'
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str) and source[:5].lower() == "data:":
        data = _decode_data_uri(source, kind, item, limits)
    elif isinstance(source, str) and (match := _URL_SCHEME.match(source)):
        if match.group(1).lower() in ("http", "https"):
            raise MediaError(kind, item, "remote URLs are not fetched here; pass bytes or a data: URI")
        raise MediaError(kind, item, f"unsupported URL scheme {match.group(1)!r}; pass a path, bytes or a data: URI")
    elif isinstance(source, str | os.PathLike):
        data = _read_file(Path(source), kind, item, limits)
    elif callable(getattr(source, "read", None)):
        data = _read_stream(source, kind, item, limits)
    else:
        raise MediaError(
            kind, item, f"unsupported source type {type(source).__name__}; pass a path, bytes, a file or a data: URI"
        )
    if not data:
        raise MediaError(kind, item, "empty input (0 bytes)")
    if len(data) > limits.max_bytes:
        raise _too_many_bytes(kind, item, len(data), limits)
    return data


def _too_many_bytes(kind: str, item: str, size: int | str, limits: MediaLimits) -> MediaError:
    return MediaError(kind, item, f"input is {size} bytes, over the limit of {limits.max_bytes} (max_bytes)")


def _decode_data_uri(uri: str, kind: str, item: str, limits: MediaLimits) -> bytes:
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise MediaError(kind, item, "malformed data: URI (no ',' before the payload)")
    if not header.lower().endswith(";base64"):
        return urllib.parse.unquote_to_bytes(payload)
    payload = "".join(payload.split())
    # Base64 grows 4:3, so the decoded size is known before decoding.
    if len(payload) // 4 * 3 > limits.max_bytes + 2:
        raise _too_many_bytes(kind, item, f"about {len(payload) // 4 * 3}", limits)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise MediaError(kind, item, f"invalid base64 in data: URI: {error}") from error


def _read_file(path: Path, kind: str, item: str, limits: MediaLimits) -> bytes:
    try:
        stat = path.stat()
        if not path.is_file():
            raise MediaError(kind, item, f"not a regular file: {_shorten(str(path))}")
        if stat.st_size > limits.max_bytes:
            raise _too_many_bytes(kind, item, stat.st_size, limits)
        with path.open("rb") as file:
            return file.read(limits.max_bytes + 1)
    except OSError as error:
        reason = "file not found" if isinstance(error, FileNotFoundError) else f"cannot read file ({error.strerror})"
        hint = ""
        if _BASE64_TEXT.fullmatch(str(path)):
            hint = " (raw base64 is not accepted: wrap it as data:<mime>;base64,<data>)"
        raise MediaError(kind, item, f"{reason}: {_shorten(str(path))}{hint}") from error


def _shorten(text: str, limit: int = 120) -> str:
    # Keep messages readable when a caller passes a whole payload where a path was expected.
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _read_stream(stream: Any, kind: str, item: str, limits: MediaLimits) -> bytes:
    try:
        data = stream.read(limits.max_bytes + 1)
    except OSError as error:
        raise MediaError(kind, item, f"cannot read file object: {error}") from error
    if isinstance(data, str):
        raise MediaError(kind, item, "file object is in text mode; open it with 'rb'")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MediaError(kind, item, f"file object returned {type(data).__name__}, expected bytes")
    return bytes(data)
