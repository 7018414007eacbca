"""Tests for the built-in benchmark: determinism, balance, splits, files, and answers re-derived from media."""

from __future__ import annotations

import json
import re
import wave
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from omnifuse.benchmark.audio import PITCH_BANDS, pitch_class
from omnifuse.benchmark.common import BACKGROUND, PALETTE, SHAPES
from omnifuse.benchmark.generate import (
    MODALITIES,
    QUESTION_TYPES,
    SyntheticRecord,
    generate_records,
    split_seed,
    to_messages,
    write_benchmark,
)
from omnifuse.benchmark.mixed import PITCH_TO_SHAPE

SR = 16000
ALL_TYPES = len(QUESTION_TYPES)


@pytest.fixture(scope="module")
def records() -> list[SyntheticRecord]:
    """Ten records of every question type (train split, seed 0)."""
    return list(generate_records(10 * ALL_TYPES, seed=0))


def of_type(records: list[SyntheticRecord], name: str) -> list[SyntheticRecord]:
    chosen = [r for r in records if r.question_type == name]
    assert chosen, name
    return chosen


# ---- helpers that re-derive answers from pixels and samples -------------------------------------


def color_masks(image: Image.Image) -> dict[str, np.ndarray]:
    """Boolean mask per palette colour present in the (lossless, un-antialiased) image."""
    pixels = np.asarray(image.convert("RGB"))
    masks = {name: (pixels == rgb).all(-1) for name, rgb in PALETTE.items()}
    return {name: m for name, m in masks.items() if m.any()}


def classify_shape(mask: np.ndarray) -> str:
    """Square fills its box, a circle ~78 %, a triangle ~50-56 %."""
    ys, xs = np.nonzero(mask)
    fill = mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
    return "square" if fill > 0.95 else "circle" if fill > 0.65 else "triangle"


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def foreground(frame: np.ndarray, threshold: int = 60) -> np.ndarray:
    """Pixels that differ clearly from the grey background (tolerates video compression)."""
    return np.abs(frame.astype(int) - np.array(BACKGROUND)).sum(-1) > threshold


def bursts(waveform: np.ndarray, frame: int = 80, threshold: float = 0.02) -> list[tuple[int, float]]:
    """(length in 5 ms frames, mean RMS) of each run of frames louder than ``threshold``."""
    count = len(waveform) // frame
    rms = np.sqrt((waveform[: count * frame].reshape(count, frame).astype(np.float64) ** 2).mean(1))
    edges = np.diff(np.concatenate([[0], (rms > threshold).astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(e - s), float(rms[s:e].mean())) for s, e in zip(starts, ends)]


def peak_frequency(waveform: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.argmax(spectrum) * SR / len(waveform))


def media_of(record: SyntheticRecord, kind: str) -> object:
    return next(obj for k, obj in record.media if k == kind)


# ---- registry, determinism, balance, splits ----------------------------------------------------


def test_registry_declares_modality_answers_and_chance(records: list[SyntheticRecord]) -> None:
    for name, qt in QUESTION_TYPES.items():
        assert qt.name == name and qt.modality in MODALITIES
        if qt.answers is None:
            assert name == "image_caption" and qt.chance == 0.0
        else:
            assert len(set(qt.answers)) == len(qt.answers) and qt.chance == pytest.approx(1 / len(qt.answers))
    assert {r.question_type for r in records} == set(QUESTION_TYPES)
    assert {qt.modality for qt in QUESTION_TYPES.values()} == set(MODALITIES)


def test_answers_are_in_the_answer_set_and_short(records: list[SyntheticRecord]) -> None:
    for r in records:
        answers = QUESTION_TYPES[r.question_type].answers
        if answers is None:
            assert re.fullmatch(r"a \w+ \w+((, a \w+ \w+)* and a \w+ \w+)?\.", r.answer), r.answer
        else:
            assert r.answer in answers, (r.question_type, r.answer)


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    runs = [write_benchmark(tmp_path / name, n=ALL_TYPES, seed=seed) for name, seed in [("a", 7), ("b", 7), ("c", 8)]]
    a, b, c = (Path(run["out_dir"]) for run in runs)
    assert (a / "data.jsonl").read_bytes() == (b / "data.jsonl").read_bytes()
    for file in sorted((a / "media").iterdir()):
        assert file.read_bytes() == (b / "media" / file.name).read_bytes(), file.name
    assert (a / "data.jsonl").read_bytes() != (c / "data.jsonl").read_bytes()


def test_split_seeds_differ_and_splits_share_no_scene() -> None:
    assert split_seed(0, "train") != split_seed(0, "test") != split_seed(1, "train")

    def scenes(split: str) -> set[str]:
        # Text sums have only 55 distinct questions, so only media scenes must be disjoint.
        found = generate_records(20 * ALL_TYPES, seed=0, split=split)
        return {json.dumps(r.facts, sort_keys=True) for r in found if r.media}

    train, test = scenes("train"), scenes("test")
    assert len(train) > 15 * ALL_TYPES and not train & test


@pytest.mark.parametrize(("n", "modalities"), [(31, MODALITIES), (17, ("image", "video")), (5, "audio,text")])
def test_question_types_are_balanced(n: int, modalities: object) -> None:
    counts = Counter(r.question_type for r in generate_records(n, seed=3, modalities=modalities))
    expected = {qt.name for qt in QUESTION_TYPES.values() if qt.modality in str(modalities)}
    assert sum(counts.values()) == n and set(counts) <= expected
    assert max(counts.values()) - min(counts.values()) <= 1
    assert len(counts) == min(n, len(expected))


def test_a_prefix_does_not_depend_on_n() -> None:
    short = [(r.question, r.answer) for r in generate_records(6, seed=5)]
    long = [(r.question, r.answer) for r in generate_records(40, seed=5)][:6]
    assert short == long


def test_bad_arguments_raise_actionable_errors() -> None:
    with pytest.raises(ValueError, match="choose from image, audio"):
        list(generate_records(2, seed=0, modalities=["smell"]))
    with pytest.raises(ValueError, match="image_size"):
        list(generate_records(2, seed=0, image_size=20))
    with pytest.raises(ValueError, match="n must be"):
        list(generate_records(-1, seed=0))


# ---- answers re-derived from the rendered media --------------------------------------------------


def test_image_color_matches_the_pixels_in_the_named_shapes_box(records: list[SyntheticRecord]) -> None:
    for r in of_type(records, "image_color"):
        target = r.facts["shapes"][r.facts["target"]]
        assert [s["shape"] for s in r.facts["shapes"]].count(target["shape"]) == 1
        assert target["shape"] in r.question
        x0, y0, x1, y1 = target["bbox"]
        box = np.asarray(media_of(r, "image"))[y0:y1, x0:x1].reshape(-1, 3)
        colors = Counter(tuple(int(v) for v in p) for p in box if tuple(p) != BACKGROUND)
        assert colors.most_common(1)[0][0] == PALETTE[r.answer]


def test_image_shape_count_and_position_match_the_pixels(records: list[SyntheticRecord]) -> None:
    for r in of_type(records, "image_shape"):
        named = next(c for c in color_masks(media_of(r, "image")) if f" {c} " in f" {r.question[:-1]} ")
        assert classify_shape(color_masks(media_of(r, "image"))[named]) == r.answer
    for r in of_type(records, "image_count"):
        assert len(color_masks(media_of(r, "image"))) == int(r.answer) == len(r.facts["shapes"])
    for r in of_type(records, "image_position"):
        masks = color_masks(media_of(r, "image"))
        (ax, ay), (bx, by) = (centroid(masks[s["color"]]) for s in r.facts["shapes"][:2])
        dx, dy = ax - bx, ay - by
        derived = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("above" if dy < 0 else "below")
        assert derived == r.answer and max(abs(dx), abs(dy)) > 2 * min(abs(dx), abs(dy))


def test_grounded_words_name_the_pixels_of_exactly_one_shape(records: list[SyntheticRecord]) -> None:
    """Each region's word sits at its `start`, and its box is the bounding box of the one shape it names."""
    expected = {"image_position": 2, "image_color": 1, "image_shape": 1}  # the words that name an object
    for name, count in expected.items():
        for r in of_type(records, name):
            assert len(r.regions) == count
            masks = color_masks(media_of(r, "image"))
            for region in r.regions:
                word, start = region["phrase"], region["start"]
                assert r.question[start : start + len(word)] == word
                named = [s for s in r.facts["shapes"] if word in (s["color"], s["shape"])]
                assert len(named) == 1, (r.question, word)
                ys, xs = np.nonzero(masks[named[0]["color"]])
                drawn = [xs.min() / 32, ys.min() / 32, (xs.max() + 1) / 32, (ys.max() + 1) / 32]
                assert region["box"] == pytest.approx(drawn, abs=1 / 32 + 1e-3)  # a triangle's apex is 1 px in
    assert all(not r.regions for r in records if r.question_type not in expected)
    message = to_messages(of_type(records, "image_position")[0])[0]["content"][-1]
    assert message["regions"] == of_type(records, "image_position")[0].regions


def test_image_caption_lists_the_drawn_shapes_left_to_right(records: list[SyntheticRecord]) -> None:
    for r in of_type(records, "image_caption"):
        masks = color_masks(media_of(r, "image"))
        ordered = sorted(masks, key=lambda c: centroid(masks[c])[0])
        parts = [f"a {c} {classify_shape(masks[c])}" for c in ordered]
        expected = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        assert r.answer == expected + "."


def test_audio_answers_match_spectrum_and_energy_bursts(records: list[SyntheticRecord]) -> None:
    for r in of_type(records, "audio_pitch"):
        waveform, rate = media_of(r, "audio")
        assert rate == SR and waveform.dtype == np.float32 and waveform.shape == (SR,)
        assert pitch_class(peak_frequency(waveform)) == r.answer
    for r in of_type(records, "audio_beeps"):
        assert len(bursts(media_of(r, "audio")[0])) == int(r.answer)
    for name, index in [("audio_longer", 0), ("audio_louder", 1)]:
        for r in of_type(records, name):
            first, second = (b[index] for b in bursts(media_of(r, "audio")[0]))
            assert ("first" if first > second else "second") == r.answer
            assert max(first, second) >= 2 * min(first, second)


def test_video_answers_match_the_frames(records: list[SyntheticRecord]) -> None:
    for r in of_type(records, "video_direction"):
        frames = [np.asarray(f) for f in media_of(r, "video")]
        assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
        (x0, y0), (x1, y1) = centroid(foreground(frames[0])), centroid(foreground(frames[-1]))
        dx, dy = x1 - x0, y1 - y0
        derived = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("up" if dy < 0 else "down")
        assert derived == r.answer and max(abs(dx), abs(dy)) >= 32 / 3 - 1
    for r in of_type(records, "video_appear"):
        per_frame = [set(color_masks(f)) for f in media_of(r, "video")]
        first_half, second_half = set.union(*per_frame[:4]), set.union(*per_frame[4:])
        appeared, vanished = second_half - first_half, first_half - second_half
        changed = appeared | vanished
        assert len(changed) == 1 and ("appear" if appeared else "disappear") == r.facts["event"]
        assert ("disappear" in r.question or "vanish" in r.question) == bool(vanished)
        frame = media_of(r, "video")[0 if vanished else -1]
        assert classify_shape(color_masks(frame)[changed.pop()]) == r.answer


def test_mixed_answers_need_both_media(records: list[SyntheticRecord]) -> None:
    for r in of_type(records, "mixed_color_pitch"):
        masks = color_masks(media_of(r, "image"))
        assert sorted(classify_shape(m) for m in masks.values()) == sorted(SHAPES)
        shape = PITCH_TO_SHAPE[pitch_class(peak_frequency(media_of(r, "audio")[0]))]
        assert next(c for c, m in masks.items() if classify_shape(m) == shape) == r.answer
    for r in of_type(records, "mixed_count_beeps"):
        beeps, shapes = len(bursts(media_of(r, "audio")[0])), len(color_masks(media_of(r, "image")))
        assert ("yes" if beeps == shapes else "no") == r.answer


def test_text_sums_are_correct(records: list[SyntheticRecord]) -> None:
    for r in of_type(records, "text_arith"):
        a, b = (int(d) for d in re.findall(r"\d", r.question))
        assert str(a + b) == r.answer and r.media == []


def test_pitch_bands_are_separated_by_at_least_an_interval() -> None:
    bands = list(PITCH_BANDS.values())
    assert all(high * 1.5 < next_low for (_, high), (next_low, _) in zip(bands, bands[1:]))


# ---- written dataset -----------------------------------------------------------------------------


def test_written_dataset_is_valid_messages_jsonl_with_decodable_media(tmp_path: Path) -> None:
    summary = write_benchmark(tmp_path / "out", n=2 * ALL_TYPES, seed=1, split="test")
    out = Path(summary["out_dir"])
    assert summary["task"] == "synth" and summary["records"] == 2 * ALL_TYPES and summary["split"] == "test"
    assert summary["per_type"] == dict.fromkeys(sorted(QUESTION_TYPES), 2)
    lines = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    assert len({line["id"] for line in lines}) == len(lines) == 2 * ALL_TYPES
    for line in lines:
        user, assistant = line["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert user["content"][-1]["type"] == "text" and assistant["content"][0]["type"] == "text"
        for part in user["content"][:-1]:
            path = Path(part["path"])
            assert not path.is_absolute() and (out / path).resolve().is_relative_to(out.resolve())
            check_media_file(part["type"], out / path, line, assistant["content"][0]["text"])


def check_media_file(kind: str, path: Path, line: dict, answer: str) -> None:
    if kind == "image":
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (32, 32)
    elif kind == "audio":
        with wave.open(str(path)) as clip:
            assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate(), clip.getnframes()) == (1, 2, SR, SR)
            samples = np.frombuffer(clip.readframes(SR), dtype="<i2") / 32767
        if line["question_type"] == "audio_pitch":
            assert pitch_class(peak_frequency(samples)) == answer
    else:
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name in ("h264", "mpeg4")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
        if line["question_type"] == "video_direction":
            (x0, y0), (x1, y1) = centroid(foreground(frames[0])), centroid(foreground(frames[-1]))
            horizontal = ("left" if x1 < x0 else "right") if abs(x1 - x0) > abs(y1 - y0) else None
            assert (horizontal or ("up" if y1 < y0 else "down")) == answer


def test_image_size_parameter_and_in_memory_messages() -> None:
    record = next(generate_records(1, seed=0, modalities="image", image_size=48))
    assert media_of(record, "image").size == (48, 48)
    user, assistant = to_messages(record)
    assert user["content"][0]["image"] is media_of(record, "image") and assistant["content"][0]["text"] == record.answer
    mixed = next(generate_records(1, seed=0, modalities="mixed"))
    audio_part = to_messages(mixed)[0]["content"][1]
    assert audio_part["type"] == "audio" and audio_part["sampling_rate"] == SR
    assert np.array_equal(audio_part["audio"], media_of(mixed, "audio")[0])
