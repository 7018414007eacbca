"""Caption pairs: data for the contrastive stage, from records or from the built-in benchmark.

A pair is the first medium of a record's user turn and the text of its first assistant turn (the
caption). `write_caption_pairs` writes the benchmark's caption mode: scenes of 1..`max_shapes` shapes
with their canonical caption ("a red circle and a blue square."), and tone clips with a description
("a single low tone.", "3 short beeps.").

Example:
    >>> write_caption_pairs("data/pairs", n=2000, seed=0)  # doctest: +SKIP
    {'task': 'pairs', 'records': 2000, ...}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.benchmark import audio as bench_audio
from omnifuse.benchmark import image as bench_image
from omnifuse.benchmark.common import COLORS, SHAPES, SynthConfig, choose, sample_distinct
from omnifuse.benchmark.generate import split_seed
from omnifuse.data.collator import record_messages
from omnifuse.embeddings.media import PreparedItem, prepare_item
from omnifuse.errors import OmnifuseInputError
from omnifuse.processing.parts import part_modality

DESCRIBE = "Describe it in one sentence."
BEEP_WORDS = {1: "a single short beep.", 2: "2 short beeps.", 3: "3 short beeps.", 4: "4 short beeps."}


class PairError(OmnifuseInputError):
    """A record that is not a (medium, caption) pair."""


def record_pair(messages: list[dict], source: str) -> tuple[dict, str]:
    """(first media part of the user turn, the first assistant turn's text)."""
    media, caption = None, None
    for message in messages:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        if message.get("role") == "user" and media is None:
            media = next((p for p in parts if part_modality(p.get("type")) is not None), None)
        if message.get("role") == "assistant" and caption is None:
            caption = " ".join(p.get("text", "") for p in parts if p.get("type") == "text").strip()
    if media is None or not caption:
        raise PairError(f"{source}: a contrastive record needs a medium in the user turn and a caption as the answer")
    return media, caption


class ContrastiveCollator:
    """Records -> {"items": [PreparedItem], "texts": [caption]} (media decoded here, in loader workers)."""

    def __init__(self, processor, cache: bool = False):
        self.processor = processor
        self.cache: dict[str, tuple[PreparedItem, str]] | None = {} if cache else None

    def pair(self, record: Any, index: int) -> tuple[PreparedItem, str]:
        messages, source = record_messages(record, index)
        if self.cache is not None and source in self.cache:
            return self.cache[source]
        part, caption = record_pair(messages, source)
        out = (prepare_item(self.processor, part, source), caption)
        if self.cache is not None:
            self.cache[source] = out
        return out

    def __call__(self, batch: list[Any]) -> dict[str, list]:
        pairs = [self.pair(record, i) for i, record in enumerate(batch)]
        return {"items": [p[0] for p in pairs], "texts": [p[1] for p in pairs]}


def scene_pair(rng: np.random.Generator, cfg: SynthConfig, max_shapes: int):
    count = int(rng.integers(1, max_shapes + 1))
    specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, count)]
    shapes = bench_image.sample_layout(rng, specs, cfg.image_size, bench_image._columns_apart)
    image = bench_image.render_scene(shapes, cfg.image_size)
    return "image", image, bench_image.caption_for(shapes), {"shapes": [s.as_fact() for s in shapes]}


def tone_pair(rng: np.random.Generator, cfg: SynthConfig):
    if rng.random() < 0.5:
        record = bench_audio.build_pitch(rng, cfg)
        caption = f"a single {record.answer} tone."
    else:
        record = bench_audio.build_beeps(rng, cfg)
        caption = BEEP_WORDS[int(record.answer)]
    return "audio", record.media[0][1], caption, {"answer": record.answer}


def write_caption_pairs(
    out_dir: str | Path, n: int, seed: int = 0, split: str = "train", modalities=("image",), max_shapes: int = 2
) -> dict[str, Any]:
    """Write `n` (medium, caption) records as `out_dir/data.jsonl` + media files, round-robin over modalities."""
    out = Path(out_dir)
    (out / "media").mkdir(parents=True, exist_ok=True)
    cfg, root = SynthConfig(), split_seed(seed, f"pairs-{split}")
    partial = out / "data.jsonl.partial"
    with partial.open("w", encoding="utf-8") as handle:
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence(root, spawn_key=(i,)))
            kind = modalities[i % len(modalities)]
            kind, obj, caption, facts = scene_pair(rng, cfg, max_shapes) if kind == "image" else tone_pair(rng, cfg)
            relative = f"media/{i:06d}{'.png' if kind == 'image' else '.wav'}"
            if kind == "image":
                obj.save(out / relative, format="PNG")
            else:
                bench_audio.write_wav(out / relative, *obj)
            messages = [
                {"role": "user", "content": [{"type": kind, "path": relative}, {"type": "text", "text": DESCRIBE}]},
                {"role": "assistant", "content": [{"type": "text", "text": caption}]},
            ]
            line = {"messages": messages, "id": f"{split}-{i:06d}", "caption": caption, "facts": facts}
            handle.write(json.dumps(line) + "\n")
    os.replace(partial, out / "data.jsonl")
    return {"task": "pairs", "records": n, "out_dir": str(out), "data": str(out / "data.jsonl"), "split": split}
