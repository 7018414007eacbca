"""The built-in benchmark: a procedurally generated multimodal dataset a tiny model learns in minutes.

Images of 1-4 flat shapes, 1 s tone / beep clips, 8-frame videos of moving or appearing shapes,
image+audio questions and text-only sums, as messages JSONL with media files
(``omnifuse synth``). Generation is deterministic by ``(seed, split)``; question types are
balanced; every answer is unambiguous by construction and a short canonical string, so
exact-match evaluation works (``QUESTION_TYPES[name].chance`` gives the chance level).

Example:
    >>> records = list(generate_records(5, seed=0, modalities=("image",)))
    >>> sorted(r.question_type for r in records)  # one of each image type
    ['image_caption', 'image_color', 'image_count', 'image_position', 'image_shape']
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.benchmark import audio as audio
from omnifuse.benchmark import image as image
from omnifuse.benchmark import mixed as mixed
from omnifuse.benchmark import video as video
from omnifuse.benchmark.common import (
    COLORS,
    MODALITIES,
    SHAPES,
    QuestionType,
    SynthConfig,
    SyntheticRecord,
    choose,
)

__all__ = [
    "MODALITIES",
    "QUESTION_TYPES",
    "QuestionType",
    "SynthConfig",
    "SyntheticRecord",
    "generate_records",
    "question_types_for",
    "split_seed",
    "to_messages",
    "write_benchmark",
]

DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
ARITH_TEMPLATES = ("What is {a} plus {b}?", "What is {a} + {b}?", "Add {a} and {b}.")
MEDIA_SUFFIX = {"image": ".png", "audio": ".wav", "video": ".mp4"}


def build_text_arith(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "What is 3 plus 4?" -> "7": the sum is drawn uniformly from 0-9, then split into two digits."""
    total = int(rng.integers(0, 10))
    a = int(rng.integers(0, total + 1))
    question = choose(rng, ARITH_TEMPLATES).format(a=a, b=total - a)
    return SyntheticRecord("text_arith", question, str(total), [], {"a": a, "b": total - a})


QUESTION_TYPES: dict[str, QuestionType] = {
    qt.name: qt
    for qt in (
        QuestionType("image_color", "image", COLORS, image.build_color, "colour of the only shape of a type"),
        QuestionType("image_shape", "image", SHAPES, image.build_shape, "shape of the only object of a colour"),
        QuestionType("image_count", "image", image.COUNTS, image.build_count, "number of shapes, 1-4"),
        QuestionType("image_position", "image", image.POSITIONS, image.build_position, "relation of two shapes"),
        QuestionType("image_caption", "image", None, image.build_caption, "shapes listed left to right"),
        QuestionType("audio_pitch", "audio", audio.PITCHES, audio.build_pitch, "pitch class of one tone"),
        QuestionType("audio_beeps", "audio", audio.BEEP_COUNTS, audio.build_beeps, "number of beeps, 1-4"),
        QuestionType("audio_longer", "audio", audio.ORDINALS, audio.build_longer, "longer of two tones"),
        QuestionType("audio_louder", "audio", audio.ORDINALS, audio.build_louder, "louder of two tones"),
        QuestionType("video_direction", "video", video.DIRECTIONS, video.build_direction, "motion direction"),
        QuestionType("video_appear", "video", SHAPES, video.build_appear, "shape that appears or disappears"),
        QuestionType("mixed_color_pitch", "mixed", COLORS, mixed.build_color_pitch, "tone picks the shape"),
        QuestionType("mixed_count_beeps", "mixed", mixed.YES_NO, mixed.build_count_beeps, "beeps == shapes?"),
        QuestionType("text_arith", "text", DIGITS, build_text_arith, "single-digit sums"),
    )
}


def split_seed(seed: int, split: str) -> int:
    """The 64-bit root seed of one split: a hash of ``(seed, split)``, so splits never share a stream.

    Example:
        >>> split_seed(0, "train") != split_seed(0, "test")
        True
    """
    digest = hashlib.blake2b(f"omnifuse-synth:{int(seed)}:{split}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def question_types_for(modalities: Sequence[str] | str = MODALITIES) -> list[QuestionType]:
    """The registered question types of ``modalities`` (a sequence or a comma-separated string).

    Example:
        >>> [qt.name for qt in question_types_for("text")]
        ['text_arith']
    """
    names = [m.strip() for m in modalities.split(",")] if isinstance(modalities, str) else list(modalities)
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown or not names:
        raise ValueError(f"unknown or empty modalities {unknown or names}; choose from {', '.join(MODALITIES)}")
    return [qt for qt in QUESTION_TYPES.values() if qt.modality in names]


def generate_records(
    n: int,
    seed: int,
    modalities: Sequence[str] | str = MODALITIES,
    split: str = "train",
    *,
    image_size: int = 32,
    video_frames: int = 8,
) -> Iterator[SyntheticRecord]:
    """Yield ``n`` records, deterministic by ``(seed, split)``.

    Types go round-robin over the enabled types in a seeded shuffled order, so counts per type
    differ by at most one. Record ``i`` draws from its own stream, so the first ``k`` records
    are the same whatever ``n`` is.

    Example:
        >>> r = next(generate_records(1, seed=0, modalities=["audio"]))
        >>> r.media[0][0], r.media[0][1][1], r.answer in QUESTION_TYPES[r.question_type].answers
        ('audio', 16000, True)
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    stream = RecordStream(seed, modalities, split, SynthConfig(image_size=image_size, video_frames=video_frames))
    for i in range(n):
        yield stream.record(i)


class RecordStream:
    """Record ``i`` of a split, built on demand: the same record whichever order or process asks for it.

    Example:
        >>> stream = RecordStream(seed=0, modalities="text")
        >>> stream.record(5).answer == stream.record(5).answer
        True
    """

    def __init__(
        self,
        seed: int,
        modalities: Sequence[str] | str = MODALITIES,
        split: str = "train",
        config: SynthConfig | None = None,
    ) -> None:
        self.config = config or SynthConfig()
        self.types = question_types_for(modalities)
        self.root = split_seed(seed, split)
        # Types go round-robin in a seeded shuffled order.
        self.order = [self.types[int(j)] for j in np.random.default_rng(self.root).permutation(len(self.types))]

    def record(self, index: int, probabilities: Sequence[float] | None = None) -> SyntheticRecord:
        """Record `index`; with `probabilities` (one per `types`) its type is drawn from them instead of
        taken round-robin."""
        # spawn_key gives record i a stream independent of the shuffle's and of every other record's.
        rng = np.random.default_rng(np.random.SeedSequence(self.root, spawn_key=(index,)))
        if probabilities is None:
            return self.order[index % len(self.order)].build(rng, self.config)
        pick = np.random.default_rng(np.random.SeedSequence(self.root, spawn_key=(index, 1)))
        return self.types[int(pick.choice(len(self.types), p=probabilities))].build(rng, self.config)


def to_messages(record: SyntheticRecord, paths: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The record as a user turn (media parts, then the question) and an assistant turn (the answer).

    With ``paths`` the media parts reference files (``{"type": "image", "path": ...}``); without,
    they carry the in-memory objects: ``{"type": "image", "image": PIL}``,
    ``{"type": "audio", "audio": waveform, "sampling_rate": 16000}``,
    ``{"type": "video", "video": [PIL, ...]}``.

    Example:
        >>> to_messages(SyntheticRecord("text_arith", "What is 1 plus 2?", "3"))[1]
        {'role': 'assistant', 'content': [{'type': 'text', 'text': '3'}]}
    """
    if paths is not None and len(paths) != len(record.media):
        raise ValueError(f"{len(record.media)} media items but {len(paths)} paths")
    parts: list[dict[str, Any]] = []
    for k, (kind, obj) in enumerate(record.media):
        if paths is not None:
            parts.append({"type": kind, "path": paths[k]})
        elif kind == "audio":
            waveform, rate = obj  # type: ignore[misc]
            parts.append({"type": "audio", "audio": waveform, "sampling_rate": rate})
        else:
            parts.append({"type": kind, kind: obj})
    question: dict[str, Any] = {"type": "text", "text": record.question}
    if record.regions:
        question["regions"] = record.regions
    parts.append(question)
    return [
        {"role": "user", "content": parts},
        {"role": "assistant", "content": [{"type": "text", "text": record.answer}]},
    ]


def _write_media(record: SyntheticRecord, out_dir: Path, index: int, fps: int) -> list[str]:
    """Write each media item under ``out_dir/media`` and return paths relative to ``out_dir``."""
    kinds = Counter(kind for kind, _ in record.media)
    paths = []
    for k, (kind, obj) in enumerate(record.media):
        # One file per kind is the norm (mixed = one PNG + one WAV); suffix only repeated kinds.
        stem = f"{index:06d}" if kinds[kind] == 1 else f"{index:06d}_{k}"
        relative = f"media/{stem}{MEDIA_SUFFIX[kind]}"
        target = out_dir / relative
        if kind == "image":
            obj.save(target, format="PNG")  # type: ignore[attr-defined]
        elif kind == "audio":
            audio.write_wav(target, *obj)  # type: ignore[misc]
        else:
            video.write_mp4(target, obj, fps=fps)  # type: ignore[arg-type]
        paths.append(relative)
    return paths


def write_benchmark(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    modalities: Sequence[str] | str = MODALITIES,
    split: str = "train",
    *,
    image_size: int = 32,
    video_frames: int = 8,
    progress: bool = False,
) -> dict[str, Any]:
    """Write ``n`` records as ``out_dir/data.jsonl`` plus PNG / 16 kHz WAV / MP4 files in ``out_dir/media``.

    Each line is ``{"messages": [...], "question_type": ..., "id": "<split>-<index>"}``; media
    paths are relative to ``out_dir``. The JSONL is written to a temporary file and renamed, so
    a reader never sees half a dataset. Returns a summary for the CLI's JSON line.

    Example:
        >>> import tempfile
        >>> write_benchmark(tempfile.mkdtemp(), n=3, modalities="text")["per_type"]
        {'text_arith': 3}
    """
    out = Path(out_dir)
    (out / "media").mkdir(parents=True, exist_ok=True)
    records = generate_records(n, seed, modalities, split, image_size=image_size, video_frames=video_frames)
    if progress:
        from tqdm import tqdm

        records = tqdm(records, total=n, desc=f"synth {split}", unit="rec")
    per_type: Counter[str] = Counter()
    data_path, partial = out / "data.jsonl", out / "data.jsonl.partial"
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for i, record in enumerate(records):
                paths = _write_media(record, out, i, fps=video_frames)
                line = {
                    "messages": to_messages(record, paths),
                    "question_type": record.question_type,
                    "id": f"{split}-{i:06d}",
                }
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                per_type[record.question_type] += 1
    except BaseException:
        partial.unlink(missing_ok=True)  # never leave a half-written file that looks like data
        raise
    os.replace(partial, data_path)
    return {
        "task": "synth",
        "records": n,
        "per_type": dict(sorted(per_type.items())),
        "out_dir": str(out),
        "data": str(data_path),
        "split": split,
        "seed": seed,
    }
