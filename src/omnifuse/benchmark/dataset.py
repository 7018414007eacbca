"""The built-in benchmark as a training dataset generated on demand: no files, and no record seen twice.

A written dataset of a few thousand records is repeated for ten or more epochs in the demo's
budget; the generator can instead give every step fresh scenes, clips and questions. Record ``i``
is built from its own seed when it is asked for, so the dataset is map-style: shuffling, epochs,
ranks, DataLoader workers and resuming from a checkpoint all work as for a file.

Videos are handed over as the MP4 bytes `write_benchmark` writes, so training decodes them exactly
as a written test split is decoded (codec and timestamps included: a frame list would count as
1 fps); images and audio are lossless either way and stay in memory.

With ``adapt=True`` the question types are not taken round-robin but drawn from a `TypeMixture`
that `adapt(model, processor)` re-weights from the model's accuracy on fresh probe records.

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

import numpy as np
import torch

from omnifuse.benchmark.common import MODALITIES, SyntheticRecord
from omnifuse.benchmark.generate import RecordStream, split_seed, to_messages
from omnifuse.benchmark.mixture import TypeMixture, exact_match_by_type
from omnifuse.benchmark.video import write_mp4
from omnifuse.data.formats import Record

# The tokenizer a recipe builds from the data is trained on this many records (they are i.i.d.).
CORPUS_RECORDS = 4000
# Fresh records per question type in each probe of the model (adaptive mix only).
PROBE_RECORDS = 16


class BenchmarkDataset(torch.utils.data.Dataset):
    """``records`` generated benchmark records of ``modalities`` (messages with in-memory media)."""

    def __init__(
        self,
        records: int,
        seed: int,
        modalities: Sequence[str] | str = MODALITIES,
        split: str = "train",
        adapt: bool = False,
    ) -> None:
        if records < 1:
            raise ValueError(f"records must be >= 1, got {records}")
        self.stream = RecordStream(seed, modalities, split)
        self.size, self.split, self.seed = records, split, seed
        self.mixture = TypeMixture([t.name for t in self.stream.types]) if adapt else None
        self.grounding_accuracy: float | None = None  # at the last probe
        self.lookup_accuracy: float | None = None  # at the last probe, with grounding.attend_layer
        self.report = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Record:
        if not 0 <= index < self.size:
            raise IndexError(f"record {index} of a {self.size}-record dataset")
        probabilities = self.mixture.probabilities() if self.mixture else None
        messages = self.messages(self.stream.record(index, probabilities))
        return Record(messages=messages, source=f"benchmark:{self.split}:{index}")

    def messages(self, record: SyntheticRecord) -> list[dict]:
        messages = to_messages(record)
        for part in messages[0]["content"]:
            if part["type"] == "video":
                part["video"] = mp4_bytes(part["video"], fps=self.stream.config.video_frames)
        return messages

    def corpus(self) -> list[Record]:
        """The first records: what a tokenizer built from the data is trained on."""
        return [self[i] for i in range(min(self.size, CORPUS_RECORDS))]

    def adapt(self, model, processor, probe: int) -> dict[str, float]:
        """Measure `model` on `PROBE_RECORDS` fresh records per type (probe number `probe` picks them) and
        re-weight the mix; returns the measured accuracy per type. A model with a grounding head also gets
        `grounding_accuracy` measured (both bins right at the grounded words; None without a head), and with
        `attend_layer` `lookup_accuracy` (the supervised head looks hardest at the object's image token)."""
        if self.mixture is None:
            raise ValueError("this dataset takes question types round-robin; build it with adapt=True")
        root = split_seed(self.seed, "probe")
        records = []
        for k, qtype in enumerate(self.stream.types):
            rng = np.random.default_rng(np.random.SeedSequence(root, spawn_key=(probe, k)))
            records += [(qtype.name, self.messages(qtype.build(rng, self.stream.config))) for _ in range(PROBE_RECORDS)]
        grounded: list[tuple[int, int, int | None]] = []
        accuracy = exact_match_by_type(model, processor, records, self.mixture.names, grounded)
        self.mixture.update(accuracy)
        total = sum(n for _, n, _ in grounded)
        self.grounding_accuracy = sum(right for right, _, _ in grounded) / total if total else None
        looked = [n for _, _, n in grounded if n is not None]
        self.lookup_accuracy = sum(looked) / total if total and looked else None
        return accuracy


def mp4_bytes(frames: list, fps: int) -> bytes:
    """The clip as `write_benchmark` writes it (one second of `fps` frames), in memory."""
    buffer = io.BytesIO()
    write_mp4(buffer, frames, fps=fps)
    return buffer.getvalue()
