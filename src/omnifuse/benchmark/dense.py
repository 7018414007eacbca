"""Dense labels the generator knows for free: what covers each image cell, what sounds in each audio frame.

A stand-in for the pretraining a real encoder (CLIP, SigLIP, Whisper) brings: the demo warms its
fresh encoders up on these labels, so every feature-map cell says which colour and which shape
covers it, and every audio frame which pitch sounds and how loud, before any question is asked
(see ``omnifuse.demo.warmup``).

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

from omnifuse.benchmark.audio import PITCHES, build_beeps, build_longer, build_louder, build_pitch, pitch_class
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


def centre_labels(shapes: Sequence[PlacedShape], image_size: int, grid: int) -> np.ndarray:
    """(grid * grid,) 0/1 per cell (raster order): 1 where an object's box centre lies, so each object is flagged
    once however many cells it covers (what counting needs).

    Example:
        >>> centre_labels([PlacedShape("square", "red", 4, 4, 12)], image_size=32, grid=4).reshape(4, 4)[1, 1]
        1
    """
    cell = image_size // grid
    flags = np.zeros(grid * grid, dtype=np.int64)
    for item in shapes:
        x, y = item.center
        flags[min(int(y // cell), grid - 1) * grid + min(int(x // cell), grid - 1)] = 1
    return flags


def random_scene(rng: np.random.Generator, cfg: SynthConfig, max_shapes: int = 4) -> list[PlacedShape]:
    """1 to ``max_shapes`` shapes of distinct colours, as the image questions draw them."""
    count = int(rng.integers(1, max_shapes + 1))
    specs = [(choose(rng, SHAPES), colour) for colour in sample_distinct(rng, COLORS, count)]
    return sample_layout(rng, specs, cfg.image_size)


def labelled_scenes(
    rng: np.random.Generator, n: int, grid: int, cfg: SynthConfig | None = None
) -> tuple[list[Image.Image], np.ndarray, np.ndarray, np.ndarray]:
    """``n`` fresh scenes: images and (n, grid * grid) colour, shape and object-centre labels."""
    cfg = cfg or SynthConfig()
    images, colours, kinds, centres = [], [], [], []
    for _ in range(n):
        shapes = random_scene(rng, cfg)
        images.append(render_scene(shapes, cfg.image_size))
        c, k = cell_labels(shapes, cfg.image_size, grid)
        colours.append(c)
        kinds.append(k)
        centres.append(centre_labels(shapes, cfg.image_size, grid))
    return images, np.stack(colours), np.stack(kinds), np.stack(centres)


def frame_labels(tones: Sequence[dict], frames: int, window_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Per encoder frame of a window: pitch class id of the sounding tone and its log2 amplitude.

    ``tones`` are a record's ``facts["tones"]``; a frame belongs to a tone when its centre lies
    inside it. Pitch ids are 1-based indices into PITCHES (``NO_OBJECT`` when silent); loudness
    is NaN on silent frames.

    Example:
        >>> pitch, loudness = frame_labels([{"freq": 300.0, "start": 0.0, "duration": 0.5, "amplitude": 0.5}], 4, 1.0)
        >>> pitch.tolist(), loudness.tolist()
        ([1, 1, 0, 0], [-1.0, -1.0, nan, nan])
    """
    centres = (np.arange(frames) + 0.5) * window_seconds / frames
    pitch = np.full(frames, NO_OBJECT, dtype=np.int64)
    loudness = np.full(frames, np.nan, dtype=np.float32)
    for tone in tones:
        sounding = (centres >= tone["start"]) & (centres < tone["start"] + tone["duration"])
        pitch[sounding] = 1 + PITCHES.index(pitch_class(tone["freq"]))
        loudness[sounding] = np.log2(tone["amplitude"])
    return pitch, loudness


def labelled_clips(
    rng: np.random.Generator, n: int, frames: int, window_seconds: float, cfg: SynthConfig | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``n`` fresh clips from the audio question builders, with (n, frames) pitch and loudness labels."""
    cfg = cfg or SynthConfig()
    builders = (build_pitch, build_beeps, build_longer, build_louder)
    clips, pitches, loudness = [], [], []
    for _ in range(n):
        record = choose(rng, builders)(rng, cfg)
        clips.append(record.media[0][1][0])
        p, v = frame_labels(record.facts["tones"], frames, window_seconds)
        pitches.append(p)
        loudness.append(v)
    return clips, np.stack(pitches), np.stack(loudness)
