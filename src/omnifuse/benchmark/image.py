"""Image questions of the built-in benchmark: flat shapes on a grey background.

Every scene is built around its answer (the answer is drawn first, uniformly), shapes never
overlap, colours are unique within a scene, and a question only names things that identify
exactly one shape, so each answer is unambiguous by construction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from omnifuse.benchmark.common import (
    BACKGROUND,
    COLORS,
    PALETTE,
    SHAPES,
    SynthConfig,
    SyntheticRecord,
    choose,
    sample_distinct,
)

POSITIONS: tuple[str, ...] = ("left", "right", "above", "below")
COUNTS: tuple[str, ...] = ("1", "2", "3", "4")
# Free pixels kept between shapes so no two boxes touch.
MARGIN = 2
# Shapes on one row in a caption must differ this much in x for "left to right" to be clear.
CAPTION_MIN_DX = 3

COLOR_TEMPLATES = (
    "What color is the {shape}?",
    "What is the color of the {shape}?",
    "Which color is the {shape}?",
)
SHAPE_TEMPLATES = (
    "What shape is the {color} object?",
    "What is the shape of the {color} object?",
    "Which shape is {color}?",
)
COUNT_TEMPLATES = ("How many shapes are there?", "How many shapes are in the image?", "Count the shapes.")
POSITION_TEMPLATES = (
    "Is the {a} left of, right of, above or below the {b}?",
    "Where is the {a} relative to the {b}: left, right, above or below?",
)
CAPTION_TEMPLATES = (
    "Describe the image in one sentence.",
    "Write a one-sentence caption for the image.",
    "What does the picture show?",
)


@dataclass(frozen=True)
class PlacedShape:
    """A filled shape inside the square box ``[x0, x0 + size) x [y0, y0 + size)``."""

    shape: str
    color: str
    x0: int
    y0: int
    size: int

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` with exclusive ends."""
        return (self.x0, self.y0, self.x0 + self.size, self.y0 + self.size)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.size / 2, self.y0 + self.size / 2)

    def moved(self, x0: int, y0: int) -> PlacedShape:
        return PlacedShape(self.shape, self.color, x0, y0, self.size)

    def as_fact(self) -> dict[str, object]:
        return {"shape": self.shape, "color": self.color, "bbox": list(self.bbox)}


def shape_size_range(image_size: int) -> tuple[int, int]:
    """Smallest and largest shape side: >= 8 px so a 32 px image still shows the shape."""
    return max(8, image_size // 4), max(9, image_size * 3 // 8)


def boxes_apart(a: PlacedShape, b: PlacedShape, margin: int = MARGIN) -> bool:
    """True when the boxes are separated by at least ``margin`` pixels on some axis."""
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    return ax1 + margin <= bx0 or bx1 + margin <= ax0 or ay1 + margin <= by0 or by1 + margin <= ay0


def draw_shape(draw: ImageDraw.ImageDraw, item: PlacedShape) -> None:
    """Draw ``item`` without anti-aliasing, so every shape pixel has exactly its palette colour."""
    x0, y0, last = item.x0, item.y0, item.size - 1
    fill = PALETTE[item.color]
    if item.shape == "square":
        draw.rectangle([x0, y0, x0 + last, y0 + last], fill=fill)
    elif item.shape == "circle":
        draw.ellipse([x0, y0, x0 + last, y0 + last], fill=fill)
    elif item.shape == "triangle":
        draw.polygon([(x0 + last / 2, y0), (x0, y0 + last), (x0 + last, y0 + last)], fill=fill)
    else:
        raise ValueError(f"unknown shape {item.shape!r}; expected one of {SHAPES}")


def render_scene(shapes: Sequence[PlacedShape], image_size: int) -> Image.Image:
    """An RGB image of ``shapes`` on the grey background.

    Example:
        >>> img = render_scene([PlacedShape("square", "red", 4, 4, 8)], 32)
        >>> img.size, img.getpixel((8, 8))
        ((32, 32), (255, 0, 0))
    """
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for item in shapes:
        draw_shape(draw, item)
    return image


def _place_one(
    rng: np.random.Generator, shape: str, color: str, image_size: int, placed: Sequence[PlacedShape]
) -> PlacedShape | None:
    low, high = shape_size_range(image_size)
    for _ in range(50):
        size = int(rng.integers(low, high + 1))
        x0, y0 = (int(v) for v in rng.integers(0, image_size - size + 1, size=2))
        candidate = PlacedShape(shape, color, x0, y0, size)
        if all(boxes_apart(candidate, other) for other in placed):
            return candidate
    return None


def sample_layout(
    rng: np.random.Generator,
    specs: Sequence[tuple[str, str]],
    image_size: int,
    accept: Callable[[list[PlacedShape]], bool] | None = None,
) -> list[PlacedShape]:
    """Place ``(shape, color)`` specs at random sizes and positions without overlap.

    Rejection sampling: layouts are redrawn until every shape fits and ``accept`` holds.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> [s.color for s in sample_layout(rng, [("circle", "red"), ("square", "blue")], 32)]
        ['red', 'blue']
    """
    for _ in range(1000):
        placed: list[PlacedShape] = []
        for shape, color in specs:
            item = _place_one(rng, shape, color, image_size, placed)
            if item is None:
                break
            placed.append(item)
        else:
            if accept is None or accept(placed):
                return placed
    raise RuntimeError(f"could not place {len(specs)} shapes in a {image_size} px image; use a larger image_size")


def spatial_relation(a: PlacedShape, b: PlacedShape) -> str | None:
    """Where ``a`` is relative to ``b`` when exactly one relation is clear, else None.

    Clear means: the boxes are apart on one axis and the centres are within half the smaller
    side on the other axis (so "left" is never also half "above").
    """
    (ax, ay), (bx, by) = a.center, b.center
    half = min(a.size, b.size) / 2
    horizontal = "left" if a.bbox[2] + MARGIN <= b.x0 else "right" if b.bbox[2] + MARGIN <= a.x0 else None
    vertical = "above" if a.bbox[3] + MARGIN <= b.y0 else "below" if b.bbox[3] + MARGIN <= a.y0 else None
    if horizontal and abs(ay - by) <= half:
        return horizontal
    if vertical and abs(ax - bx) <= half:
        return vertical
    return None


def caption_for(shapes: Sequence[PlacedShape]) -> str:
    """The canonical caption: shapes listed left to right, e.g. ``"a red circle and a blue square."``."""
    parts = [f"a {s.color} {s.shape}" for s in sorted(shapes, key=lambda s: s.center)]
    if len(parts) == 1:
        return parts[0] + "."
    return ", ".join(parts[:-1]) + " and " + parts[-1] + "."


def grounded(question: str, named: Sequence[tuple[str, PlacedShape]], image_size: int) -> list[dict[str, object]]:
    """Regions of `question`: each word that singles a shape out (its colour, or a unique shape type), at
    its first whole-word occurrence, with the shape's box in fractions of the image."""
    regions = []
    for word, item in named:
        start = re.search(rf"\b{re.escape(word)}\b", question).start()
        box = [round(v / image_size, 4) for v in item.bbox]
        regions.append({"phrase": word, "start": start, "box": box})
    return regions


def _scene_record(
    name: str,
    question: str,
    answer: str,
    shapes: list[PlacedShape],
    cfg: SynthConfig,
    named: Sequence[tuple[str, PlacedShape]] = (),
    **extra: object,
) -> SyntheticRecord:
    facts = {"shapes": [s.as_fact() for s in shapes], "image_size": cfg.image_size, **extra}
    image = render_scene(shapes, cfg.image_size)
    regions = grounded(question, named, cfg.image_size)
    return SyntheticRecord(name, question, answer, [("image", image)], facts, regions)


def _shuffled(rng: np.random.Generator, specs: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    """Specs in random order and the new index of the first one (the target)."""
    order = [int(j) for j in rng.permutation(len(specs))]
    return [specs[j] for j in order], order.index(0)


def build_color(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "What color is the circle?": the named shape type occurs exactly once in the scene (a grounded phrase)."""
    shape, count = choose(rng, SHAPES), int(rng.integers(1, 5))
    colors = sample_distinct(rng, COLORS, count)
    others = [s for s in SHAPES if s != shape]
    specs, target = _shuffled(rng, [(shape, colors[0])] + [(choose(rng, others), c) for c in colors[1:]])
    shapes = sample_layout(rng, specs, cfg.image_size)
    question = choose(rng, COLOR_TEMPLATES).format(shape=shape)
    return _scene_record("image_color", question, colors[0], shapes, cfg, [(shape, shapes[target])], target=target)


def build_shape(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "What shape is the red object?": colours are unique within a scene (the colour is a grounded phrase)."""
    count = int(rng.integers(1, 5))
    colors = sample_distinct(rng, COLORS, count)
    specs, target = _shuffled(rng, [(choose(rng, SHAPES), c) for c in colors])
    shapes = sample_layout(rng, specs, cfg.image_size)
    question = choose(rng, SHAPE_TEMPLATES).format(color=colors[0])
    named = [(colors[0], shapes[target])]
    return _scene_record("image_shape", question, specs[target][0], shapes, cfg, named, target=target)


def build_count(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "How many shapes are there?": 1 to 4, drawn uniformly."""
    count = int(rng.integers(1, 5))
    specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, count)]
    shapes = sample_layout(rng, specs, cfg.image_size)
    return _scene_record("image_count", choose(rng, COUNT_TEMPLATES), str(count), shapes, cfg)


def build_position(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "Is the red circle left of, right of, above or below the blue square?": one clear relation.

    The two colour words are grounded phrases (the word that singles each object out, with its box), as
    the named word of colour and shape questions is: the model's grounding head learns where the object is
    at those words, and with `attend_layer` which image token to look at (README "What mattered").
    """
    relation, count = choose(rng, POSITIONS), int(rng.integers(2, 5))
    specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, count)]
    shapes = sample_layout(rng, specs, cfg.image_size, lambda s: spatial_relation(s[0], s[1]) == relation)
    a, b = (f"{s.color} {s.shape}" for s in shapes[:2])
    question = choose(rng, POSITION_TEMPLATES).format(a=a, b=b)
    named = [(shapes[0].color, shapes[0]), (shapes[1].color, shapes[1])]
    return _scene_record("image_position", question, relation, shapes, cfg, named, pair=[0, 1])


def _columns_apart(shapes: list[PlacedShape]) -> bool:
    xs = sorted(s.center[0] for s in shapes)
    return all(x2 - x1 >= CAPTION_MIN_DX for x1, x2 in zip(xs, xs[1:]))


def build_caption(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """A one-sentence caption listing the shapes left to right (centres at least 3 px apart in x)."""
    count = int(rng.integers(1, 5))
    specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, count)]
    shapes = sample_layout(rng, specs, cfg.image_size, _columns_apart)
    return _scene_record("image_caption", choose(rng, CAPTION_TEMPLATES), caption_for(shapes), shapes, cfg)
