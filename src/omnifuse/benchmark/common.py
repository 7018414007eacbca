"""Shared vocabulary of the built-in benchmark: records, question types, palette, render settings.

The modality modules (``synthetic_image``, ``synthetic_audio``, ``synthetic_video``,
``synthetic_mixed``) build records from these pieces; ``omnifuse.benchmark.generate`` is the
entry point that registers them and writes datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

MODALITIES: tuple[str, ...] = ("image", "audio", "video", "mixed", "text")
SAMPLE_RATE = 16000
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Saturated colours at least ~115 apart in RGB, so a 32 px image still tells them apart after resizing.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 200, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "purple": (150, 0, 200),
    "orange": (255, 140, 0),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
# Mid grey keeps both white and black shapes visible.
BACKGROUND: tuple[int, int, int] = (128, 128, 128)
# Chance for free-form answers (captions): exact match of a whole sentence by guessing is ~0.
CAPTION_CHANCE = 0.0


@dataclass
class SyntheticRecord:
    """One generated question with its answer, in-memory media and the scene that produced them.

    ``media`` holds ``(kind, object)`` pairs in prompt order: ``("image", PIL.Image)``,
    ``("audio", (np.float32 waveform, 16000))`` or ``("video", [PIL.Image, ...])``.
    ``facts`` describes the scene (shape boxes, tone times, ...) so tests can re-derive answers.

    Example:
        >>> r = SyntheticRecord("text_arith", "What is 2 plus 3?", "5")
        >>> r.answer, r.media
        ('5', [])
    """

    question_type: str
    question: str
    answer: str
    media: list[tuple[str, object]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    # Grounded phrases of the question (omnifuse.processing.grounding): {"phrase", "start", "box"} each.
    regions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SynthConfig:
    """Render settings shared by every builder.

    Example:
        >>> SynthConfig(image_size=48).clip_samples
        16000
    """

    image_size: int = 32
    video_frames: int = 8
    sample_rate: int = SAMPLE_RATE
    clip_seconds: float = 1.0

    def __post_init__(self) -> None:
        # Four shapes of >= 8 px must fit without overlap, and yuv420p video needs even sides.
        if self.image_size < 32 or self.image_size % 2:
            raise ValueError(f"image_size must be an even number >= 32, got {self.image_size}")
        # Appear/disappear needs a first and a second half of at least two frames each.
        if self.video_frames < 4 or self.video_frames % 2:
            raise ValueError(f"video_frames must be an even number >= 4, got {self.video_frames}")

    @property
    def clip_samples(self) -> int:
        """Length of every audio clip in samples."""
        return round(self.sample_rate * self.clip_seconds)


Builder = Callable[[np.random.Generator, SynthConfig], SyntheticRecord]


@dataclass(frozen=True)
class QuestionType:
    """A kind of question: its modality, closed answer set and chance level.

    ``chance`` is ``1 / len(answers)`` for closed sets (answers are drawn uniformly) and
    ``CAPTION_CHANCE`` (0.0) for free-form answers (``answers is None``).

    Example:
        >>> from omnifuse.benchmark.generate import QUESTION_TYPES
        >>> qt = QUESTION_TYPES["audio_pitch"]
        >>> qt.modality, qt.answers, round(qt.chance, 3)
        ('audio', ('low', 'mid', 'high'), 0.333)
    """

    name: str
    modality: str
    answers: tuple[str, ...] | None
    build: Builder = field(repr=False, compare=False)
    description: str = ""
    chance: float = field(init=False)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"question type {self.name!r}: unknown modality {self.modality!r}")
        chance = 1.0 / len(self.answers) if self.answers else CAPTION_CHANCE
        object.__setattr__(self, "chance", chance)


def choose(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One element of ``options``, uniformly (keeps Python types, unlike ``rng.choice``)."""
    return options[int(rng.integers(len(options)))]


def sample_distinct(rng: np.random.Generator, options: Sequence[T], k: int, exclude: Sequence[T] = ()) -> list[T]:
    """``k`` distinct elements of ``options`` not in ``exclude``, in random order."""
    pool = [o for o in options if o not in exclude]
    return [pool[int(j)] for j in rng.permutation(len(pool))[:k]]


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A float drawn uniformly from ``[low, high)``."""
    return float(rng.uniform(low, high))
