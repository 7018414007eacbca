"""Size and shape bounds on prompts, dataset records and command-line counts, checked before the work starts.

A prompt is checked twice: its characters before tokenizing (`MediaLimits.max_text_chars`), its tokens
after placeholder expansion against the language model's positions. A dataset record (one JSONL line)
is bounded in bytes before it is parsed (`OMNIFUSE_MAX_RECORD_BYTES`).

Example:
    >>> check_messages([{"role": "user", "content": "hi"}], max_chars=10)
    >>> check_prompt_tokens(600, max_positions=512)
    Traceback (most recent call last):
    ...
    omnifuse.safety.limits.InputLimitError: the prompt is 600 tokens, over the model's 512 positions; shorten it
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from omnifuse.errors import OmnifuseInputError, UsageError

RECORD_BYTES_ENV = "OMNIFUSE_MAX_RECORD_BYTES"
DEFAULT_MAX_RECORD_BYTES = 16 * 2**20
ROLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")  # user, assistant, system, tool, ... never markup
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_READ_CHUNK = 2**20


class InputLimitError(OmnifuseInputError):
    """An input over a size limit, or text that cannot be a prompt (bad role, non-string, invalid UTF-8)."""


def check_messages(messages: Any, max_chars: int) -> None:
    """Refuse a conversation whose structure, text encoding or total length cannot be a prompt.

    Example:
        >>> check_messages([{"role": "<|im_start|>", "content": "hi"}], max_chars=10)
        Traceback (most recent call last):
        ...
        omnifuse.safety.limits.InputLimitError: message 0: role '<|im_start|>' is not a role name ...
    """
    if not isinstance(messages, list):
        raise InputLimitError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InputLimitError(f"message {i}: expected a dict with 'role' and 'content', got {message!r:.60}")
        role = message.get("role")
        if not isinstance(role, str) or not ROLE_NAME.match(role):
            raise InputLimitError(
                f"message {i}: role {role!r:.60} is not a role name (letters, digits, '_' or '-', e.g. 'user')"
            )
        for j, text in _texts_of(message.get("content", ""), i):
            _check_utf8(text, f"message {i}, part {j}")
            total += len(text)
    if total > max_chars:
        raise InputLimitError(
            f"the prompt is {total} characters, over the limit of {max_chars} (max_text_chars); shorten it"
        )


def check_prompt_text(text: Any, max_chars: int) -> None:
    """One prompt string (the LLaVA-style `processor(text=...)` call): a valid UTF-8 string within `max_chars`."""
    if not isinstance(text, str):
        raise InputLimitError(f"a prompt must be a string, got {type(text).__name__}")
    _check_utf8(text, "the prompt")
    if len(text) > max_chars:
        raise InputLimitError(
            f"the prompt is {len(text)} characters, over the limit of {max_chars} (max_text_chars); shorten it"
        )


def _texts_of(content: Any, index: int) -> Iterator[tuple[int, str]]:
    if isinstance(content, str):
        yield 0, content
        return
    if content is None:  # an assistant turn that only calls a tool (OpenAI format)
        return
    if not isinstance(content, list):
        kind = type(content).__name__
        raise InputLimitError(f"message {index}: content must be a string or a list of parts, got {kind}")
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise InputLimitError(f"message {index}, part {j}: a content part is a dict, got {type(part).__name__}")
        if part.get("type") == "text":
            text = part.get("text", "")
            if not isinstance(text, str):
                raise InputLimitError(f"message {index}, part {j}: text must be a string, got {type(text).__name__}")
            yield j, text


def _check_utf8(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        # Lone surrogates: what Python makes of invalid UTF-8 bytes on a command line.
        raise InputLimitError(f"{where}: the text is not valid UTF-8 (at character {err.start})") from None


def check_prompt_tokens(n_tokens: int, max_positions: int | None, where: str = "the prompt") -> None:
    """Refuse a prompt that does not fit the language model's positions (None: the model sets no bound)."""
    if max_positions is not None and n_tokens > max_positions:
        raise InputLimitError(f"{where} is {n_tokens} tokens, over the model's {max_positions} positions; shorten it")


def max_positions_of(text_config: Any) -> int | None:
    """The positions a language model config can address, or None when it names no limit.

    Example:
        >>> from transformers import LlamaConfig
        >>> max_positions_of(LlamaConfig(max_position_embeddings=512))
        512
    """
    for key in _POSITION_KEYS:
        value = text_config.get(key) if isinstance(text_config, dict) else getattr(text_config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_count(name: str, value: int | None, *, allow_none: bool = False) -> None:
    """Refuse a count argument (batch size, limit, max new tokens) that is not a positive integer."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")


def check_eval_arguments(batch_size: int, limit: int | None) -> None:
    """`omnifuse eval`'s counts: a batch size of at least 1, and no limit or a limit of at least 1."""
    check_count("batch_size (--batch-size)", batch_size)
    check_count("limit (--limit)", limit, allow_none=True)


def max_record_bytes() -> int:
    """Bytes one dataset record may take ($OMNIFUSE_MAX_RECORD_BYTES, default 16 MiB)."""
    raw = os.environ.get(RECORD_BYTES_ENV, "")
    if not raw:
        return DEFAULT_MAX_RECORD_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{RECORD_BYTES_ENV} must be a positive number of bytes, got {raw!r}")
    return int(raw)


def bounded_lines(handle: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes | int]]:
    """(line number, line bytes) of a binary file; a line over `max_bytes` comes as its size, unread.

    Example:
        >>> import io
        >>> list(bounded_lines(io.BytesIO(b"ab\\n" + b"x" * 9 + b"\\nc"), max_bytes=4))
        [(1, b'ab\\n'), (2, 10), (3, b'c')]
    """
    lineno = 0
    while True:
        line = handle.readline(max_bytes + 1)
        if not line:
            return
        lineno += 1
        if len(line) <= max_bytes or line.endswith(b"\n"):  # the newline may be the one byte over
            yield lineno, line
            continue
        size = len(line)
        while not line.endswith(b"\n"):  # skip the rest of the long line without holding it
            line = handle.readline(_READ_CHUNK)
            if not line:
                break
            size += len(line)
        yield lineno, size


__all__ = [
    "InputLimitError",
    "bounded_lines",
    "check_count",
    "check_eval_arguments",
    "check_messages",
    "check_prompt_text",
    "check_prompt_tokens",
    "max_positions_of",
    "max_record_bytes",
]
