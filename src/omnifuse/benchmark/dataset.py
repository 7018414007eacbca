"""The built-in benchmark as a training dataset generated on demand: no files, and no record seen twice.

A written dataset of a few thousand records is repeated for ten or more epochs in the demo's
budget; the generator can instead give every step fresh scenes, clips and questions. Record ``i``
is built from its own seed when it is asked for, so the dataset is map-style: shuffling, epochs,
ranks, DataLoader workers and resuming from a checkpoint all work as for a file.

Videos are handed over as the MP4 bytes `write_benchmark` writes, so training decodes them exactly
as a written test split is decoded (codec and timestamps included: a frame list would count as
1 fps); images and audio are lossless either way and stay in memory.

Example:
    >>> dataset = BenchmarkDataset(records=1000, seed=0, modalities="image,text")
    >>> len(dataset), dataset[3].source
    (1000, 'benchmark:train:3')
    >>> dataset[3].messages[0]["content"][-1]["type"]
    'text'
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch

from omnifuse.benchmark.common import MODALITIES
from omnifuse.benchmark.generate import RecordStream, to_messages
from omnifuse.benchmark.video import write_mp4
from omnifuse.data.formats import Record

# The tokenizer a recipe builds from the data is trained on this many records (they are i.i.d.).
CORPUS_RECORDS = 4000


class BenchmarkDataset(torch.utils.data.Dataset):
    """``records`` generated benchmark records of ``modalities`` (messages with in-memory media)."""

    def __init__(
        self, records: int, seed: int, modalities: Sequence[str] | str = MODALITIES, split: str = "train"
    ) -> None:
        if records < 1:
            raise ValueError(f"records must be >= 1, got {records}")
        self.stream = RecordStream(seed, modalities, split)
        self.size, self.split = records, split
        self.report = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Record:
        if not 0 <= index < self.size:
            raise IndexError(f"record {index} of a {self.size}-record dataset")
        messages = to_messages(self.stream.record(index))
        for part in messages[0]["content"]:
            if part["type"] == "video":
                part["video"] = mp4_bytes(part["video"], fps=self.stream.config.video_frames)
        return Record(messages=messages, source=f"benchmark:{self.split}:{index}")

    def corpus(self) -> list[Record]:
        """The first records: what a tokenizer built from the data is trained on."""
        return [self[i] for i in range(min(self.size, CORPUS_RECORDS))]


def mp4_bytes(frames: list, fps: int) -> bytes:
    """The clip as `write_benchmark` writes it (one second of `fps` frames), in memory."""
    buffer = io.BytesIO()
    write_mp4(buffer, frames, fps=fps)
    return buffer.getvalue()
