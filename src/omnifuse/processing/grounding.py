"""Grounded phrases: a text part may say which region of the picture a phrase of it names.

A user text part can carry ``regions``, each a phrase of that text and the box it refers to, in
fractions of the image's width and height (RefCOCO / Flickr30k-Entities style annotations). The
phrase is found by its first occurrence, or at character ``start`` when the region gives one:

    {"type": "text", "text": "Is the red circle left of the blue square?",
     "regions": [{"phrase": "red circle", "box": [0.1, 0.4, 0.3, 0.6]},
                 {"phrase": "blue square", "box": [0.6, 0.4, 0.9, 0.7]}]}

When labels are built, the last token of each phrase gets the centre of its box as a target
(`EncodedSample.regions`, collated to `grounding_xy`); a model with a grounding head learns to
say, at that token, where the named object is (`omnifuse.modeling.grounding`). A phrase that is
not in its text or a box outside [0, 1] is an error naming the region.

Example:
    >>> parse_regions({"text": "the red circle", "regions": [{"phrase": "red circle", "box": [0, 0, 0.5, 0.5]}]})
    [Region(start=4, end=14, centre=(0.25, 0.25))]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

REGIONS = "regions"
# The batch key of the targets: (batch, length, 2) box centres, -1 where a token grounds nothing.
GROUNDING_KEY = "grounding_xy"


@dataclass(frozen=True)
class Region:
    """A phrase as the character span ``[start, end)`` of its text part, and its box centre (x, y) in [0, 1]."""

    start: int
    end: int
    centre: tuple[float, float]


def _box_problem(box: Any) -> str | None:
    if not isinstance(box, list | tuple) or len(box) != 4:
        return f"box must be [x0, y0, x1, y1], got {box!r:.60}"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return f"box values must be finite numbers, got {box!r:.60}"
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        return f"box must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (fractions of the image), got {list(box)}"
    return None


def _parse_region(text: str, region: Any) -> Region | str:
    if not isinstance(region, dict):
        return f"must be an object with 'phrase' and 'box', got {type(region).__name__}"
    phrase = region.get("phrase")
    if not isinstance(phrase, str) or not phrase.strip():
        return "phrase must be a non-empty string"
    problem = _box_problem(region.get("box"))
    if problem is not None:
        return problem
    start = region.get("start")
    if start is None:
        start = text.find(phrase)
        if start < 0:
            return f"phrase {phrase!r:.60} does not occur in the part's text"
    elif not isinstance(start, int) or isinstance(start, bool) or text[start : start + len(phrase)] != phrase:
        return f"phrase {phrase!r:.60} is not at character {start!r} of the part's text"
    x0, y0, x1, y1 = (float(v) for v in region["box"])
    return Region(start, start + len(phrase), ((x0 + x1) / 2, (y0 + y1) / 2))


def parse_regions(part: dict[str, Any]) -> list[Region]:
    """The regions of a text part (none when it has no ``regions``); raises ValueError naming the bad one."""
    raw = part.get(REGIONS)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{REGIONS} must be a list of {{'phrase', 'box'}} objects, got {type(raw).__name__}")
    text = str(part.get("text", ""))
    regions = []
    for k, region in enumerate(raw):
        parsed = _parse_region(text, region)
        if isinstance(parsed, str):
            raise ValueError(f"{REGIONS}[{k}]: {parsed}")
        regions.append(parsed)
    return regions


def regions_problem(part: dict[str, Any]) -> str | None:
    """Why a text part's regions are unusable, or None (for dataset validation)."""
    try:
        parse_regions(part)
    except ValueError as err:
        return str(err)
    return None


def region_tokens(tokenizer, text: str, regions: list[Region]) -> tuple[list[int], dict[int, tuple[float, float]]]:
    """Token ids of `text` and, per region, the index of the token holding the phrase's last character."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("grounded regions need a fast tokenizer (one that reports character offsets)")
    encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    targets: dict[int, tuple[float, float]] = {}
    for region in regions:
        last = [k for k, (a, b) in enumerate(encoded["offset_mapping"]) if a < region.end and b > region.start]
        if not last:
            raise ValueError(f"phrase at characters {region.start}-{region.end} has no token")
        targets[last[-1]] = region.centre
    return list(encoded["input_ids"]), targets


__all__ = ["GROUNDING_KEY", "REGIONS", "Region", "parse_regions", "region_tokens", "regions_problem"]
