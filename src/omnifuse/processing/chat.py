"""Chat rendering with provenance: which tokens came from the template, the user, the assistant or a medium.

The chat template only ever sees text parts: every text part and every media part is swapped for a
sentinel before rendering and split out again afterwards, so any template works with any modality
and each media part becomes exactly its modality's placeholder token. User and assistant text is
tokenized with special tokens split, so a literal "<image>" typed by a user stays text and never
becomes a media slot. Assistant tokens (and the turn-end token that closes them) are the only ones
that carry loss.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omnifuse.processing.grounding import Region, parse_regions, region_tokens
from omnifuse.processing.parts import TEXT, part_modality

IGNORE_INDEX = -100
# \x00<n>\x00 stands for text part n, \x00m<n>\x00 for media part n while the template renders.
_SENTINEL = re.compile(r"\x00(m?\d+)\x00")


@dataclass
class Segment:
    text: str
    role: str | None  # None: template scaffolding
    token_id: int | None = None  # a media part: exactly this placeholder token
    regions: list[Region] = field(default_factory=list)  # grounded phrases of a text part


@dataclass
class MediaPart:
    modality: str
    part: dict[str, Any]
    item: str  # where it came from, for error messages: "message 0, part 1"


@dataclass(frozen=True)
class Placeholder:
    modality: str
    token: str
    token_id: int


# (part type, where) -> the modality and placeholder that part fills; raises for a type the model lacks.
PlaceholderLookup = Callable[[str, str], Placeholder]


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
            if kind != TEXT and part_modality(kind) is None:
                raise ValueError(f"message {i}, part {j}: unknown content part type {kind!r}")
        out.append({**message, "content": parts})
    return out


def render_segments(
    tokenizer, messages: list[dict], add_generation_prompt: bool, placeholder_for: PlaceholderLookup
) -> tuple[list[Segment], list[MediaPart]]:
    """Render the chat template with every part swapped for a sentinel, then split on them."""
    texts: list[Segment] = []
    media: list[tuple[MediaPart, Placeholder]] = []
    marked = []
    for i, message in enumerate(normalize_messages(messages)):
        parts = []
        for j, part in enumerate(message["content"]):
            if part["type"] == TEXT:
                try:
                    regions = parse_regions(part)
                except ValueError as err:
                    raise ValueError(f"message {i}, part {j}: {err}") from None
                texts.append(Segment(str(part.get("text", "")).replace("\x00", ""), message["role"], regions=regions))
                parts.append({"type": TEXT, "text": f"\x00{len(texts) - 1}\x00"})
            else:
                where = f"message {i}, part {j}"
                placeholder = placeholder_for(part["type"], where)
                media.append((MediaPart(placeholder.modality, part, where), placeholder))
                parts.append({"type": TEXT, "text": f"\x00m{len(media) - 1}\x00"})
        marked.append({"role": message["role"], "content": parts})
    rendered = tokenizer.apply_chat_template(marked, tokenize=False, add_generation_prompt=add_generation_prompt)
    segments = []
    for k, piece in enumerate(_SENTINEL.split(rendered)):
        if k % 2 == 0:
            segments += [Segment(piece, None)] if piece else []
        elif piece.startswith("m"):
            placeholder = media[int(piece[1:])][1]
            segments.append(Segment(placeholder.token, None, token_id=placeholder.token_id))
        else:
            segments.append(texts[int(piece)])
    return segments, [part for part, _ in media]


def _message_tokens(tokenizer, segment: Segment) -> tuple[list[int], dict[int, tuple[float, float]]]:
    """A user or assistant text: special tokens split (a typed "<image>" stays text), grounded phrases found."""
    if segment.regions:
        return region_tokens(tokenizer, segment.text, segment.regions)
    return tokenizer(segment.text, add_special_tokens=False, split_special_tokens=True).input_ids, {}


def tokenize_segments(
    tokenizer, segments: list[Segment]
) -> tuple[list[int], list[int], dict[int, tuple[float, float]]]:
    """Token ids and labels (assistant text and the turn-end right after it are supervised), and the box
    centre of each grounded phrase keyed by the index of its last token."""
    ids: list[int] = []
    labels: list[int] = []
    regions: dict[int, tuple[float, float]] = {}
    turn_end = tokenizer.eos_token_id
    after_assistant = False
    for segment in segments:
        if segment.token_id is not None:
            tokens, supervised = [segment.token_id], [IGNORE_INDEX]
            after_assistant = False
        elif segment.role is None:
            tokens = tokenizer(segment.text, add_special_tokens=False).input_ids
            supervised = [
                t if (after_assistant and k == 0 and t == turn_end) else IGNORE_INDEX for k, t in enumerate(tokens)
            ]
            after_assistant = after_assistant and not tokens
        else:
            tokens, found = _message_tokens(tokenizer, segment)
            regions.update({len(ids) + k: centre for k, centre in found.items()})
            is_assistant = segment.role == "assistant"
            supervised = list(tokens) if is_assistant else [IGNORE_INDEX] * len(tokens)
            after_assistant = is_assistant
        ids += tokens
        labels += supervised
    return ids, labels, regions
