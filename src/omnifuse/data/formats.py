"""Dataset record formats: native messages, LLaVA JSON and ShareGPT, all converted to messages.

The native format is the OpenAI / transformers chat format: a list of
``{"role": "system" | "user" | "assistant", "content": [parts]}`` where a part is
``{"type": "text", "text": ...}`` or a media part such as ``{"type": "image", "path": ...}``.

Example:
    >>> raw = {"image": "cat.png", "conversations": [
    ...     {"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]}
    >>> to_messages(raw)[0]["content"]
    [{'type': 'image', 'path': 'cat.png'}, {'type': 'text', 'text': 'What is it?'}]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from omnifuse.errors import OmnifuseInputError
from omnifuse.processing.grounding import regions_problem
from omnifuse.processing.parts import TEXT, part_modality, source_problem

FORMATS = ("messages", "llava", "sharegpt")
ROLES = ("system", "user", "assistant")

_ROLE_ALIASES = dict(human="user", user="user", gpt="assistant", assistant="assistant", system="system")
_MEDIA_COLUMNS = {"image": "images", "video": "videos", "audio": "audios"}
# Keys each format turns into messages; every other top-level key is kept in Record.extra.
_CONSUMED_KEYS = {
    "messages": {"messages"},
    "llava": {"conversations", "image", "system"},
    "sharegpt": {"conversations", "messages", "system", *_MEDIA_COLUMNS.values()},
}
# "C:" is a Windows drive, not a scheme, hence two or more letters.
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


class DatasetFormatError(OmnifuseInputError):
    """A dataset record that cannot be used, with where (source, field) and what was wrong.

    Example:
        >>> str(DatasetFormatError("unknown role 'bot'", source="a.jsonl:3", field="messages[1].role"))
        "a.jsonl:3: messages[1].role: unknown role 'bot'"
    """

    def __init__(self, reason: str, *, source: str = "", field: str = "") -> None:
        self.source = source
        self.field = field
        self.bare_reason = reason
        self.reason = f"{field}: {reason}" if field else reason
        super().__init__(f"{source}: {self.reason}" if source else self.reason)

    def at(self, source: str) -> DatasetFormatError:
        """The same error, located at ``source``."""
        return DatasetFormatError(self.bare_reason, source=source, field=self.field)


@dataclass
class Record:
    """One usable training sample: messages (media as paths, not decoded) and where it came from."""

    messages: list[dict]
    source: str
    extra: dict = field(default_factory=dict)


@dataclass
class Skip:
    """One input sample that was not used, and why."""

    source: str
    reason: str


def detect_format(obj: dict) -> str:
    """Name the format of one raw record: ``"messages"``, ``"llava"`` or ``"sharegpt"``.

    Example:
        >>> detect_format({"conversations": [], "images": ["a.png"]})
        'sharegpt'
    """
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"expected a JSON object per record, got {type(obj).__name__}")
    media_columns = [c for c in _MEDIA_COLUMNS.values() if obj.get(c) is not None]
    if isinstance(obj.get("messages"), list):
        # LLaMA-Factory's OpenAI-style ShareGPT: string contents with <image> tokens plus media columns.
        plain = all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in obj["messages"])
        return "sharegpt" if media_columns and plain else "messages"
    if isinstance(obj.get("conversations"), list):
        if obj.get("image") is not None and media_columns:
            raise DatasetFormatError(
                f"has both 'image' (LLaVA) and {media_columns} (ShareGPT) columns; keep one style",
                field="image",
            )
        return "llava" if obj.get("image") is not None else "sharegpt"
    raise DatasetFormatError(
        "cannot tell the format: expected a 'messages' list (native), or a 'conversations' list "
        f"with an 'image' key (LLaVA) or 'images'/'videos'/'audios' lists (ShareGPT); found keys {sorted(obj)}",
        field="messages",
    )


def to_messages(obj: dict, *, fmt: str | None = None, source: str = "") -> list[dict]:
    """Convert one raw record of any supported format to native messages.

    Media tokens (``<image>``, ``<video>``, ``<audio>``) become media parts at their place in the
    text; whitespace around a token is a separator, not content, and is dropped.

    Example:
        >>> to_messages({"conversations": [{"from": "human", "value": "Hi <image> there"},
        ...     {"from": "gpt", "value": "Ok"}], "images": ["a.png"]})[0]["content"]
        [{'type': 'text', 'text': 'Hi'}, {'type': 'image', 'path': 'a.png'}, {'type': 'text', 'text': 'there'}]
    """
    try:
        fmt = fmt or detect_format(obj)
        if fmt not in FORMATS:
            raise DatasetFormatError(f"unknown format {fmt!r}; expected one of {FORMATS}")
        if fmt == "messages":
            return _native_messages(obj)
        # LLaVA has one "image" (absent on text-only samples); ShareGPT has images/videos/audios lists.
        names = {"image": "image"} if fmt == "llava" else _MEDIA_COLUMNS
        columns = {kind: (col, _as_list(obj[col], col)) for kind, col in names.items() if obj.get(col) is not None}
        return _turns_to_messages(obj, columns, prepend_untokened=fmt == "llava")
    except DatasetFormatError as err:
        raise err.at(source) from None


def extra_fields(obj: dict, fmt: str) -> dict:
    """The top-level fields a format does not turn into messages (ids, question types, ...)."""
    return {k: v for k, v in obj.items() if k not in _CONSUMED_KEYS[fmt] and v is not None}


def _native_messages(obj: dict) -> list[dict]:
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise DatasetFormatError("must be a list of messages", field="messages")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise DatasetFormatError("must be an object with 'role' and 'content'", field=f"messages[{i}]")
        content = msg.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            # Arrow-backed datasets fill absent struct fields with None; they mean "not there".
            content = [_drop_none(p) if isinstance(p, dict) else p for p in content]
        else:
            raise DatasetFormatError("must be a string or a list of parts", field=f"messages[{i}].content")
        out.append({**_drop_none(msg), "content": content})
    return out


def _turns_to_messages(obj: dict, columns: dict[str, tuple[str, list]], *, prepend_untokened: bool) -> list:
    turns_key = "conversations" if "conversations" in obj else "messages"
    turns = obj.get(turns_key)
    if not isinstance(turns, list):
        raise DatasetFormatError("must be a list of turns", field=turns_key)
    parsed = [_parse_turn(turn, f"{turns_key}[{i}]") for i, turn in enumerate(turns)]
    prepend: list[dict] = []
    for kind, (col, values) in columns.items():
        count = sum(text.count(f"<{kind}>") for _, text in parsed)
        if count == 0 and prepend_untokened:
            # LLaVA puts an image without an <image> token in front of the first question.
            prepend += [_media_part(kind, v, f"{col}[{j}]") for j, v in enumerate(values)]
        elif count != len(values):
            raise DatasetFormatError(
                f"{count} <{kind}> token(s) in the conversation but {len(values)} {kind}(s) given; "
                f"each <{kind}> marks where one entry of '{col}' goes",
                field=col,
            )
    queues = {
        f"<{kind}>": iter([_media_part(kind, v, f"{col}[{j}]") for j, v in enumerate(values)])
        for kind, (col, values) in columns.items()
        if kind not in {p["type"] for p in prepend}
    }
    messages = _system_column(obj)
    messages += [{"role": role, "content": _split_on_tokens(text, queues)} for role, text in parsed]
    if prepend:
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise DatasetFormatError("has media but no human turn to attach it to", field=turns_key)
        first_user["content"] = prepend + first_user["content"]
    return messages


def _parse_turn(turn: Any, where: str) -> tuple[str, str]:
    if not isinstance(turn, dict):
        raise DatasetFormatError("must be an object with 'from'/'value' or 'role'/'content'", field=where)
    role_key, text_key = ("from", "value") if "from" in turn else ("role", "content")
    role = _ROLE_ALIASES.get(turn.get(role_key))
    if role is None:
        raise DatasetFormatError(
            f"unknown role {turn.get(role_key)!r}; expected human/user, gpt/assistant or system",
            field=f"{where}.{role_key}",
        )
    text = turn.get(text_key)
    if not isinstance(text, str):
        raise DatasetFormatError(f"must be a string, got {type(text).__name__}", field=f"{where}.{text_key}")
    return role, text


def _system_column(obj: dict) -> list[dict]:
    system = obj.get("system")
    if system is None or system == "":
        return []
    if not isinstance(system, str):
        raise DatasetFormatError(f"must be a string, got {type(system).__name__}", field="system")
    return [{"role": "system", "content": [{"type": "text", "text": system}]}]


def _split_on_tokens(text: str, queues: dict[str, Any]) -> list[dict]:
    if not queues:
        return [{"type": "text", "text": text}] if text else []
    pattern = re.compile("|".join(re.escape(token) for token in queues))
    pieces = pattern.split(text)
    tokens = pattern.findall(text)
    parts: list[dict] = []
    for i, piece in enumerate(pieces):
        piece = piece.lstrip() if i > 0 else piece
        piece = piece.rstrip() if i < len(tokens) else piece
        if piece:
            parts.append({"type": "text", "text": piece})
        if i < len(tokens):
            parts.append(next(queues[tokens[i]]))
    return parts


def _as_list(value: Any, col: str) -> list:
    if isinstance(value, str | dict):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise DatasetFormatError(f"must be a path or a list of paths, got {type(value).__name__}", field=col)


def _media_part(kind: str, value: Any, where: str) -> dict:
    if isinstance(value, str):
        if not value.strip():
            raise DatasetFormatError("is an empty path", field=where)
        return {"type": kind, "url" if SCHEME.match(value) else "path": value}
    if isinstance(value, dict) and {"bytes", "path"} >= set(value):
        # The undecoded form of a `datasets` Image/Audio/Video column.
        if value.get("bytes") is not None:
            return {"type": kind, kind: value["bytes"]}
        if value.get("path"):
            return {"type": kind, "path": value["path"]}
    if value is None or isinstance(value, dict):
        raise DatasetFormatError(f"has no {kind} data (no path, url or bytes)", field=where)
    return {"type": kind, kind: value}


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def validate_record(messages: list[dict], *, source: str) -> None:
    """Raise DatasetFormatError unless ``messages`` is a usable training conversation.

    Multi-turn is fine; the last turn must be the assistant's (it is what the model learns).

    Example:
        >>> validate_record([{"role": "user", "content": "Hi"}], source="a.jsonl:1")
        Traceback (most recent call last):
        ...
        omnifuse.data.formats.DatasetFormatError: a.jsonl:1: messages: has no assistant turn to learn from
    """
    if not isinstance(messages, list) or not messages:
        raise DatasetFormatError("is empty", source=source, field="messages")
    for i, msg in enumerate(messages):
        _validate_message(msg, f"messages[{i}]", source)
    if not any(m["role"] == "assistant" for m in messages):
        raise DatasetFormatError("has no assistant turn to learn from", source=source, field="messages")
    if messages[-1]["role"] != "assistant":
        raise DatasetFormatError(
            f"the last turn is {messages[-1]['role']!r}; training needs it to be the assistant's answer",
            source=source,
            field=f"messages[{len(messages) - 1}].role",
        )


def _validate_message(msg: Any, where: str, source: str) -> None:
    if not isinstance(msg, dict):
        raise DatasetFormatError("must be an object", source=source, field=where)
    if msg.get("role") not in ROLES:
        raise DatasetFormatError(
            f"unknown role {msg.get('role')!r}; expected one of {ROLES}", source=source, field=f"{where}.role"
        )
    content = msg.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise DatasetFormatError("is empty", source=source, field=f"{where}.content")
    for j, part in enumerate(content):
        problem = _part_problem(part)
        if problem is None and msg["role"] == "assistant" and part["type"] != "text":
            problem = f"{part['type']} in an assistant turn; only text answers can be trained"
        if problem is not None:
            raise DatasetFormatError(problem, source=source, field=f"{where}.content[{j}]")


def _part_problem(part: Any) -> str | None:
    """Why a content part is unusable, or None when it is fine."""
    if not isinstance(part, dict):
        return f"must be an object with a 'type', got {type(part).__name__}"
    kind = part.get("type")
    if kind == TEXT:
        text = part.get("text")
        return regions_problem(part) if isinstance(text, str) and text.strip() else "empty text"
    if part_modality(kind) is None:
        return f"unknown part type {kind!r}; expected 'text' or a modality name (image, audio, depth, ...)"
    return source_problem(part)
