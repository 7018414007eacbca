"""The built-in benchmark as a generated training dataset: records on demand, same as the written ones."""

import numpy as np
import pytest
from PIL import Image

from omnifuse.benchmark.dataset import CORPUS_RECORDS, BenchmarkDataset
from omnifuse.benchmark.generate import generate_records, to_messages


def test_record_i_is_the_generators_record_i():
    dataset = BenchmarkDataset(records=30, seed=3, modalities="image,audio,text")
    written = list(generate_records(30, seed=3, modalities="image,audio,text"))
    for i in (0, 7, 29):
        ours, theirs = dataset[i].messages, to_messages(written[i])
        assert ours[1] == theirs[1]  # the answer
        assert ours[0]["content"][-1] == theirs[0]["content"][-1]  # the question
        for a, b in zip(ours[0]["content"][:-1], theirs[0]["content"][:-1]):
            if a["type"] == "image":
                assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
            elif a["type"] == "audio":
                assert np.array_equal(a["audio"], b["audio"]) and a["sampling_rate"] == 16000


def test_records_are_rebuilt_identically_in_any_order():
    dataset = BenchmarkDataset(records=50, seed=0, modalities="image")
    late_first = [dataset[i] for i in (40, 3)]
    again = [dataset[i] for i in (3, 40)]
    assert late_first[0].messages[1] == again[1].messages[1]
    image = late_first[1].messages[0]["content"][0]["image"]
    assert isinstance(image, Image.Image)
    assert np.array_equal(np.asarray(image), np.asarray(again[0].messages[0]["content"][0]["image"]))
    assert late_first[0].source == "benchmark:train:40"


def test_seeds_give_different_data_and_every_type_comes_round():
    a, b = BenchmarkDataset(28, seed=0), BenchmarkDataset(28, seed=1)
    answers_a = [a[i].messages[1]["content"][0]["text"] for i in range(28)]
    answers_b = [b[i].messages[1]["content"][0]["text"] for i in range(28)]
    assert answers_a != answers_b
    types = {a.stream.record(i).question_type for i in range(14)}
    assert len(types) == 14  # round-robin over all 14 question types


def test_bounds_and_bad_arguments():
    dataset = BenchmarkDataset(records=5, seed=0, modalities="text")
    assert len(dataset) == 5
    with pytest.raises(IndexError, match="record 5 of a 5-record dataset"):
        dataset[5]
    with pytest.raises(ValueError, match="records must be >= 1"):
        BenchmarkDataset(records=0, seed=0)
    with pytest.raises(ValueError, match=r"unknown or empty modalities \['smell'\]"):
        BenchmarkDataset(records=5, seed=0, modalities="smell")


def test_corpus_is_the_first_records_capped():
    small = BenchmarkDataset(records=10, seed=0, modalities="text")
    assert [r.source for r in small.corpus()] == [f"benchmark:train:{i}" for i in range(10)]
    large = BenchmarkDataset(records=CORPUS_RECORDS + 500, seed=0, modalities="text")
    assert len(large.corpus()) == CORPUS_RECORDS


def test_videos_are_the_mp4_a_written_split_holds(tmp_path):
    from omnifuse.benchmark.generate import write_benchmark
    from omnifuse.processing.media import load_video

    dataset = BenchmarkDataset(records=4, seed=2, modalities="video")
    written = write_benchmark(tmp_path, n=4, seed=2, modalities="video")
    first_line = (tmp_path / "data.jsonl").read_text().splitlines()[0]
    import json

    path = tmp_path / json.loads(first_line)["messages"][0]["content"][0]["path"]
    ours = dataset[0].messages[0]["content"][0]["video"]
    assert isinstance(ours, bytes) and written["records"] == 4
    (frames_a, times_a), (frames_b, times_b) = load_video(ours, num_frames=4), load_video(str(path), num_frames=4)
    assert times_a == times_b and max(times_a) <= 1.0  # one second of 8 frames, not 8 s at 1 fps
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(frames_a, frames_b))
