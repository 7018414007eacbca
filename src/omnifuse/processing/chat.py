"""Chat rendering with provenance: which tokens came from the template, the user or the assistant.

User and assistant text is tokenized with special tokens split, so a literal "<image>" typed by a
user stays text and never becomes a media slot. Assistant tokens (and the turn-end token that
closes them) are the only ones that carry loss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100
MEDIA_PART_TYPES = {
    "image": "image",
    "image_url": "image",
    "audio": "audio",
    "input_audio": "audio",
    "video": "video",
    "video_url": "video",
}
_SENTINEL = re.compile(r"\x00(\d+)\x00")


@dataclass
class Segment:
    text: str
    role: str | None  # None: template scaffolding (may hold placeholder tokens)


@dataclass
class MediaPart:
    kind: str
    part: dict[str, Any]
    item: str  # where it came from, for error messages: "message 0, part 1"


def normalize_messages(messages: list[dict]) -> list[dict]:
    """Content strings become one text part; unknown roles and part types are rejected here."""
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError(f"message {i}: expected a dict with 'role' and 'content', got {message!r:.80}")
        content = message.get("content", "")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        for j, part in enumerate(parts):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" and kind not in MEDIA_PART_TYPES:
                raise ValueError(f"message {i}, part {j}: unknown content part type {kind!r}")
        out.append({**message, "content": parts})
    return out


def render_segments(
    tokenizer, messages: list[dict], add_generation_prompt: bool
) -> tuple[list[Segment], list[MediaPart]]:
    """Render the chat template with every text part swapped for a sentinel, then split on them."""
    texts: list[Segment] = []
    media: list[MediaPart] = []
    marked = []
    for i, message in enumerate(normalize_messages(messages)):
        parts = []
        for j, part in enumerate(message["content"]):
            if part["type"] == "text":
                texts.append(Segment(str(part.get("text", "")).replace("\x00", ""), message["role"]))
                parts.append({"type": "text", "text": f"\x00{len(texts) - 1}\x00"})
            else:
                media.append(MediaPart(MEDIA_PART_TYPES[part["type"]], part, f"message {i}, part {j}"))
                parts.append({"type": part["type"]})
        marked.append({"role": message["role"], "content": parts})
    rendered = tokenizer.apply_chat_template(marked, tokenize=False, add_generation_prompt=add_generation_prompt)
    pieces = _SENTINEL.split(rendered)
    segments = [
        texts[int(piece)] if k % 2 else Segment(piece, None) for k, piece in enumerate(pieces) if piece or k % 2
    ]
    return segments, media


def tokenize_segments(tokenizer, segments: list[Segment]) -> tuple[list[int], list[int]]:
    """Token ids and labels: assistant text and the turn-end right after it are supervised."""
    ids: list[int] = []
    labels: list[int] = []
    turn_end = tokenizer.eos_token_id
    after_assistant = False
    for segment in segments:
        if segment.role is None:
            tokens = tokenizer(segment.text, add_special_tokens=False).input_ids
            supervised = [
                t if (after_assistant and k == 0 and t == turn_end) else IGNORE_INDEX for k, t in enumerate(tokens)
            ]
            after_assistant = after_assistant and not tokens
        else:
            tokens = tokenizer(segment.text, add_special_tokens=False, split_special_tokens=True).input_ids
            is_assistant = segment.role == "assistant"
            supervised = list(tokens) if is_assistant else [IGNORE_INDEX] * len(tokens)
            after_assistant = is_assistant
        ids += tokens
        labels += supervised
    return ids, labels
