"""Video questions of the built-in benchmark: short clips (8 frames by default) of flat shapes.

Motion covers a third to a half of the frame along one axis only; a shape that appears or
disappears is present in exactly one half of the clip and differs in type from the shape
that stays, so every answer is unambiguous by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

from omnifuse.benchmark.common import (
    COLORS,
    SHAPES,
    SynthConfig,
    SyntheticRecord,
    choose,
    sample_distinct,
)
from omnifuse.benchmark.image import PlacedShape, render_scene, sample_layout, shape_size_range

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
EVENTS: tuple[str, ...] = ("appear", "disappear")
# Tried in order: h264 plays everywhere; MPEG-4 part 2 is the fallback of builds without libx264.
VIDEO_CODECS: tuple[str, ...] = ("libx264", "mpeg4")

DIRECTION_TEMPLATES = (
    "Which way does the {shape} move?",
    "In which direction does the {color} {shape} move: left, right, up or down?",
    "Where is the shape moving?",
)
APPEAR_TEMPLATES = {
    "appear": ("Which shape appears during the video?", "Which shape shows up partway through the clip?"),
    "disappear": (
        "Which shape disappears during the video?",
        "Which shape vanishes partway through the clip?",
    ),
}


@lru_cache(maxsize=1)
def video_codec() -> str:
    """The first of ``VIDEO_CODECS`` this PyAV build can encode.

    Example:
        >>> video_codec() in VIDEO_CODECS
        True
    """
    for name in VIDEO_CODECS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # PyAV raises different error types per version for a missing encoder.
            continue
        return name
    raise RuntimeError(f"this PyAV build can encode none of {VIDEO_CODECS}; install PyAV wheels from PyPI")


def write_mp4(target: str | Path | BinaryIO, frames: Sequence[Image.Image], fps: int) -> None:
    """Encode RGB ``frames`` as an MP4 (h264 if available, else MPEG-4 part 2), one frame per tick, to a path
    or a binary file object."""
    codec = video_codec()
    width, height = frames[0].size
    with av.open(str(target) if isinstance(target, str | Path) else target, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Near-lossless and single-threaded: tiny frames keep their colours and bytes stay reproducible.
        if codec == "libx264":
            stream.options = {"crf": "10", "threads": "1"}
        else:
            stream.bit_rate = 2_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame.convert("RGB"))))
        container.mux(stream.encode())


def _path_positions(start: int, distance: int, frames: int, reverse: bool) -> list[int]:
    offsets = [round(distance * f / (frames - 1)) for f in range(frames)]
    return [start + distance - o if reverse else start + o for o in offsets]


def build_direction(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "Which way does the circle move?": one shape travels S/3 to S/2 pixels along one axis."""
    size_px = cfg.image_size
    direction, shape, color = choose(rng, DIRECTIONS), choose(rng, SHAPES), choose(rng, COLORS)
    low, high = shape_size_range(size_px)
    size = int(rng.integers(low, high + 1))
    distance = int(rng.integers(size_px // 3, size_px // 2 + 1))
    start = int(rng.integers(0, size_px - size - distance + 1))
    cross = int(rng.integers(0, size_px - size + 1))
    along = _path_positions(start, distance, cfg.video_frames, reverse=direction in ("left", "up"))
    horizontal = direction in ("left", "right")
    corners = [(a, cross) if horizontal else (cross, a) for a in along]
    item = PlacedShape(shape, color, corners[0][0], corners[0][1], size)
    frames = [render_scene([item.moved(x, y)], size_px) for x, y in corners]
    question = choose(rng, DIRECTION_TEMPLATES).format(shape=shape, color=color)
    facts = {"shape": shape, "color": color, "size": size, "corners": [list(c) for c in corners]}
    return SyntheticRecord("video_direction", question, direction, [("video", frames)], facts)


def build_appear(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "Which shape appears / disappears?": the transient shape is visible in one half of the clip only."""
    answer, event = choose(rng, SHAPES), choose(rng, EVENTS)
    static_shape = choose(rng, [s for s in SHAPES if s != answer])
    colors = sample_distinct(rng, COLORS, 2)
    static, transient = sample_layout(rng, [(static_shape, colors[0]), (answer, colors[1])], cfg.image_size)
    half = cfg.video_frames // 2
    visible = list(range(half, cfg.video_frames)) if event == "appear" else list(range(half))
    frames = [
        render_scene([static, transient] if f in visible else [static], cfg.image_size) for f in range(cfg.video_frames)
    ]
    question = choose(rng, APPEAR_TEMPLATES[event])
    facts = {"event": event, "static": static.as_fact(), "transient": transient.as_fact(), "visible": visible}
    return SyntheticRecord("video_appear", question, answer, [("video", frames)], facts)
