"""Mixed questions of the built-in benchmark: each needs an image and an audio clip together.

- ``mixed_color_pitch``: the tone's pitch class picks one of three shapes (one of each type in
  the image); the answer is that shape's colour. Neither medium alone determines it.
- ``mixed_count_beeps``: does the number of beeps equal the number of shapes? (yes / no)
"""

from __future__ import annotations

import numpy as np

from omnifuse.benchmark.audio import PITCHES, beep_train, pitch_tone, render_tones
from omnifuse.benchmark.common import (
    COLORS,
    SHAPES,
    SynthConfig,
    SyntheticRecord,
    choose,
    sample_distinct,
)
from omnifuse.benchmark.image import render_scene, sample_layout

# low -> circle, mid -> square, high -> triangle: stated in every question, so nothing is hidden.
PITCH_TO_SHAPE: dict[str, str] = dict(zip(PITCHES, SHAPES))
YES_NO: tuple[str, ...] = ("yes", "no")

COLOR_PITCH_TEMPLATES = (
    "The tone's pitch picks a shape: low = circle, mid = square, high = triangle. What color is that shape?",
    "Low tone means the circle, mid tone the square, high tone the triangle. What color is the shape the tone picks?",
)
COUNT_BEEPS_TEMPLATES = (
    "Is the number of beeps equal to the number of shapes? Answer yes or no.",
    "Do the beeps in the clip match the shapes in the picture in number? Answer yes or no.",
)


def build_color_pitch(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """Image with one circle, one square and one triangle; the tone picks which one's colour to name."""
    pitch = choose(rng, PITCHES)
    colors = sample_distinct(rng, COLORS, len(SHAPES))
    order = [int(j) for j in rng.permutation(len(SHAPES))]
    shapes = sample_layout(rng, [(SHAPES[j], colors[j]) for j in order], cfg.image_size)
    tone = pitch_tone(rng, pitch, cfg)
    target = next(i for i, s in enumerate(shapes) if s.shape == PITCH_TO_SHAPE[pitch])
    media = [
        ("image", render_scene(shapes, cfg.image_size)),
        ("audio", (render_tones([tone], cfg), cfg.sample_rate)),
    ]
    facts = {
        "shapes": [s.as_fact() for s in shapes],
        "image_size": cfg.image_size,
        "tones": [tone.as_fact()],
        "pitch": pitch,
        "target": target,
    }
    question = choose(rng, COLOR_PITCH_TEMPLATES)
    return SyntheticRecord("mixed_color_pitch", question, shapes[target].color, media, facts)


def build_count_beeps(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """1-4 shapes and 1-4 beeps; "yes" exactly when the counts are equal (half of the records)."""
    answer = choose(rng, YES_NO)
    shape_count = int(rng.integers(1, 5))
    beep_count = shape_count if answer == "yes" else choose(rng, [c for c in range(1, 5) if c != shape_count])
    specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, shape_count)]
    shapes = sample_layout(rng, specs, cfg.image_size)
    tones = beep_train(rng, beep_count, cfg)
    media = [
        ("image", render_scene(shapes, cfg.image_size)),
        ("audio", (render_tones(tones, cfg), cfg.sample_rate)),
    ]
    facts = {
        "shapes": [s.as_fact() for s in shapes],
        "image_size": cfg.image_size,
        "tones": [t.as_fact() for t in tones],
        "beeps": beep_count,
    }
    question = choose(rng, COUNT_BEEPS_TEMPLATES)
    return SyntheticRecord("mixed_count_beeps", question, answer, media, facts)
