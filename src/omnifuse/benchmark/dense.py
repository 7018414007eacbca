"""Dense labels the generator knows for free: what object covers each cell of an image scene.

A stand-in for the pretraining a real vision encoder (CLIP, SigLIP) brings: the demo warms its
fresh encoder up on these labels, so every feature-map cell says which colour and which shape
covers it before any question is asked (see ``omnifuse.demo.warmup``).

Example:
    >>> from omnifuse.benchmark.image import PlacedShape
    >>> colours, shapes = cell_labels([PlacedShape("square", "red", 0, 0, 8)], image_size=32, grid=4)
    >>> int(colours[0]), int(shapes[0]), int(colours[1])  # cell (0, 0) red square, cell (0, 1) empty
    (1, 2, 0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from omnifuse.benchmark.common import BACKGROUND, COLORS, SHAPES, SynthConfig, choose, sample_distinct
from omnifuse.benchmark.image import PlacedShape, render_scene, sample_layout

# Label 0 is "no object"; colour k is COLORS[k - 1], shape k is SHAPES[k - 1].
NO_OBJECT = 0
# A cell is labelled with an object only when it covers at least this fraction of the cell.
MIN_COVERAGE = 0.1


def shape_mask(item: PlacedShape, image_size: int) -> np.ndarray:
    """(image_size, image_size) bool: the pixels ``item`` paints (any palette colour differs from the grey)."""
    pixels = np.asarray(render_scene([item], image_size))
    return (pixels != np.array(BACKGROUND, dtype=pixels.dtype)).any(-1)


def cell_labels(shapes: Sequence[PlacedShape], image_size: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell of a ``grid`` x ``grid`` split (raster order): colour and shape ids of the object covering most of it.

    Ids are 1-based indices into COLORS / SHAPES; ``NO_OBJECT`` (0) where no object covers 10% of the cell.
    """
    if image_size % grid:
        raise ValueError(f"image_size {image_size} is not a multiple of the grid {grid}")
    colours = np.full(grid * grid, NO_OBJECT, dtype=np.int64)
    kinds = np.full(grid * grid, NO_OBJECT, dtype=np.int64)
    if not shapes:
        return colours, kinds
    cell = image_size // grid
    masks = np.stack([shape_mask(s, image_size) for s in shapes]).astype(np.int64)
    cover = masks.reshape(len(shapes), grid, cell, grid, cell).sum((2, 4)).reshape(len(shapes), -1)
    best = cover.argmax(0)
    for index, owner in enumerate(best):
        if cover[owner, index] >= MIN_COVERAGE * cell * cell:
            colours[index] = 1 + COLORS.index(shapes[owner].color)
            kinds[index] = 1 + SHAPES.index(shapes[owner].shape)
    return colours, kinds


def random_scene(rng: np.random.Generator, cfg: SynthConfig, max_shapes: int = 4) -> list[PlacedShape]:
    """1 to ``max_shapes`` shapes of distinct colours, as the image questions draw them."""
    count = int(rng.integers(1, max_shapes + 1))
    specs = [(choose(rng, SHAPES), colour) for colour in sample_distinct(rng, COLORS, count)]
    return sample_layout(rng, specs, cfg.image_size)


def labelled_scenes(
    rng: np.random.Generator, n: int, grid: int, cfg: SynthConfig | None = None
) -> tuple[list[Image.Image], np.ndarray, np.ndarray]:
    """``n`` fresh scenes: images and (n, grid * grid) colour and shape labels."""
    cfg = cfg or SynthConfig()
    images, colours, kinds = [], [], []
    for _ in range(n):
        shapes = random_scene(rng, cfg)
        images.append(render_scene(shapes, cfg.image_size))
        c, k = cell_labels(shapes, cfg.image_size, grid)
        colours.append(c)
        kinds.append(k)
    return images, np.stack(colours), np.stack(kinds)
