"""OpenAI / vLLM content parts -> the processor's parts, media fetched to bytes within per-request limits.

Accepted: `text`, and for every configured modality N the three spellings of `processing/parts.py`:
`{"type": N, N: url}`, `{"type": "N_url", "N_url": {"url": ...}}` (OpenAI's `image_url`, vLLM's
`video_url`, `audio_url`) and `{"type": "input_N", "input_N": {"data": base64, ...}}` (`input_audio`).
A part that names a kind goes to the model's one modality of that kind (the processor's
`modality_for`). Media become `{"type": N, N: bytes}`.

Example:
    >>> convert_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}]}],
    ...                  processor.modality_for, FetchPolicy(), ServerLimits())
    [{'role': 'user', 'content': [{'type': 'image', 'image': b'...'}]}]
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omnifuse.errors import ModalityError
from omnifuse.processing.parts import TEXT, part_modality
from omnifuse.serving.fetch import FetchError, FetchPolicy, fetch_media
from omnifuse.serving.limits import ServerLimits
from omnifuse.serving.protocol import APIError

ROLES = {"developer": "system"}
# part type -> the model's modality it fills (OmniProcessor.modality_for); raises ModalityError otherwise.
ModalityLookup = Callable[[str], str]


@dataclass
class MediaBudget:
    """Counts one request's media against its limits while the parts are converted."""

    limits: ServerLimits
    items: int = 0
    bytes: int = 0

    def charge(self, size: int, param: str) -> None:
        self.items += 1
        self.bytes += size
        if self.items > self.limits.max_media_items:
            raise APIError(
                400,
                f"{param}: more than {self.limits.max_media_items} media items in one request (max_media_items)",
                param=param,
                code="too_many_media_items",
            )
        if self.bytes > self.limits.max_media_bytes:
            raise APIError(
                413,
                f"{param}: the request's media exceed {self.limits.max_media_bytes} bytes (max_media_bytes)",
                param=param,
                code="media_too_large",
            )


def _fail(param: str, message: str, code: str = "invalid_content_part") -> APIError:
    return APIError(400, f"{param}: {message}", param=param, code=code)


def _url_of(value: Any, param: str) -> str:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise _fail(param, "expected {'url': '<data: URI or URL>'} or a URL string")
    return url


def _base64_medium(kind: str, value: Any, limits: ServerLimits, param: str) -> bytes:
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise _fail(param, f"{kind} needs {{'data': '<base64>', 'format': ...}}")
    data = value["data"]
    if len(data) // 4 * 3 > limits.max_item_bytes + 2:  # known before decoding
        raise APIError(
            413,
            f"{param}: about {len(data) // 4 * 3} bytes of audio, over {limits.max_item_bytes} (max_item_bytes)",
            param=param,
            code="media_too_large",
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise _fail(param, f"{kind}.data is not valid base64: {err}") from err


def _medium(part: dict, kind: str, name: str, policy: FetchPolicy, limits: ServerLimits, param: str) -> bytes:
    if kind.startswith("input_"):
        return _base64_medium(kind, part.get(kind), limits, param)
    value = part.get(kind, part.get(name))
    try:
        return fetch_media(_url_of(value, param), dataclasses.replace(policy, max_bytes=limits.max_item_bytes))
    except FetchError as err:
        raise _fail(param, str(err), code="media_fetch_failed") from err


def _modality(kind: Any, modality_for: ModalityLookup, param: str) -> str:
    if part_modality(kind) is None:
        raise _fail(param, f"unknown content part type {kind!r}; expected 'text' or a modality part (image_url, ...)")
    try:
        return modality_for(kind)
    except ModalityError as err:
        raise _fail(param, str(err), code="unsupported_modality") from err


def convert_content(
    content: Any, modality_for: ModalityLookup, policy: FetchPolicy, budget: MediaBudget, param: str
) -> list[dict]:
    """One message's content (a string or a list of parts) -> processor parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": TEXT, "text": content}]
    parts = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type")
        if kind == TEXT:
            if not isinstance(part.get("text"), str):
                raise _fail(where, "a text part needs a string 'text'")
            parts.append({"type": TEXT, "text": part["text"]})
            continue
        name = _modality(kind, modality_for, where)
        data = _medium(part, kind, name, policy, budget.limits, where)
        budget.charge(len(data), where)
        parts.append({"type": name, name: data})
    return parts


def convert_messages(
    messages: list[dict], modality_for: ModalityLookup, policy: FetchPolicy, limits: ServerLimits
) -> list[dict]:
    """All messages of a request -> processor messages; raises APIError naming the bad part."""
    if len(messages) > limits.max_messages:
        raise APIError(
            400,
            f"messages: {len(messages)} messages, over {limits.max_messages} (max_messages)",
            param="messages",
            code="too_many_messages",
        )
    budget = MediaBudget(limits)
    out = []
    for i, message in enumerate(messages):
        role = ROLES.get(message["role"], message["role"])
        parts = convert_content(message.get("content"), modality_for, policy, budget, f"messages[{i}].content")
        if role != "user" and any(p["type"] != "text" for p in parts):
            raise _fail(f"messages[{i}].content", f"media are accepted in user messages only, not {role}")
        out.append({"role": role, "content": parts})
    return out
