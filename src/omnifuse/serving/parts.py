"""OpenAI / vLLM content parts -> the processor's parts, media fetched to bytes within per-request limits.

Accepted: `text`; `image_url`, `video_url`, `audio_url` (`{"url": ...}` or a string); `input_audio`
(`{"data": base64, "format": "wav"}`); and for every configured modality N, `{"type": N, N: url}` or
`{"type": N + "_url", N + "_url": {"url": ...}}`. Media become `{"type": N, N: bytes}`.

Example:
    >>> convert_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}]}],
    ...                  {"image"}, FetchPolicy(), ServerLimits())
    [{'role': 'user', 'content': [{'type': 'image', 'image': b'...'}]}]
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from omnifuse.serving.fetch import FetchError, FetchPolicy, fetch_media
from omnifuse.serving.limits import ServerLimits
from omnifuse.serving.protocol import APIError

# OpenAI / vLLM part types with a fixed modality.
STANDARD_PARTS = {"image_url": "image", "video_url": "video", "audio_url": "audio", "input_audio": "audio"}
ROLES = {"developer": "system"}


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


def _base64_audio(value: Any, limits: ServerLimits, param: str) -> bytes:
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise _fail(param, "input_audio needs {'data': '<base64>', 'format': 'wav'}")
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
        raise _fail(param, f"input_audio.data is not valid base64: {err}") from err


def _medium(part: dict, kind: str, modalities: set[str], policy: FetchPolicy, limits: ServerLimits, param: str):
    name = STANDARD_PARTS.get(kind) or kind.removesuffix("_url")
    if name not in modalities:
        raise _fail(
            param, f"this model has no {name} input (its modalities: {sorted(modalities)})", code="unsupported_modality"
        )
    if kind == "input_audio":
        return name, _base64_audio(part.get("input_audio"), limits, param)
    value = part.get(kind, part.get(name))
    try:
        data = fetch_media(_url_of(value, param), FetchPolicy(**{**vars(policy), "max_bytes": limits.max_item_bytes}))
    except FetchError as err:
        raise _fail(param, str(err), code="media_fetch_failed") from err
    return name, data


def convert_content(
    content: Any, modalities: set[str], policy: FetchPolicy, budget: MediaBudget, param: str
) -> list[dict]:
    """One message's content (a string or a list of parts) -> processor parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _fail(where, "a text part needs a string 'text'")
            parts.append({"type": "text", "text": part["text"]})
            continue
        known = (
            kind in STANDARD_PARTS
            or kind in modalities
            or (isinstance(kind, str) and kind.endswith("_url") and kind.removesuffix("_url") in modalities)
        )
        if not known:
            types = sorted({"text", *STANDARD_PARTS, *modalities})
            raise _fail(where, f"unknown content part type {kind!r}; accepted: {types}")
        name, data = _medium(part, kind, modalities, policy, budget.limits, where)
        budget.charge(len(data), where)
        parts.append({"type": name, name: data})
    return parts


def convert_messages(
    messages: list[dict], modalities: set[str], policy: FetchPolicy, limits: ServerLimits
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
        parts = convert_content(message.get("content"), modalities, policy, budget, f"messages[{i}].content")
        if role != "user" and any(p["type"] != "text" for p in parts):
            raise _fail(f"messages[{i}].content", f"media are accepted in user messages only, not {role}")
        out.append({"role": role, "content": parts})
    return out
