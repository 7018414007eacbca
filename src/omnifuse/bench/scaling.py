"""`omnifuse bench scaling`: omnifuse's training step time against images per sample and sequence length.

Two series on the same model: samples with 1, 2, 4, 8 images (a short question and answer each), and
text-only rows of 256 ... 2048 tokens. Points are measured round-robin, `repeats` rounds, medians
kept. A line `seconds = a + b * tokens` is fitted per series; its R^2 says how close to linear in
tokens the cost grows, and `ratio` is the per-token cost at the largest point over the smallest
(1.0 is perfectly linear; attention makes long rows cost somewhat more per token).

Example:
    >>> fit_line([100, 200, 400], [1.0, 2.0, 4.0])["r2"]
    1.0
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

from omnifuse.bench.common import BenchError, log, median, resolve_device, rounded, set_threads
from omnifuse.bench.train import primed_collator, train_step
from omnifuse.bench.workload import Workload, build_workload, make_conversation
from omnifuse.processing.chat import IGNORE_INDEX
from omnifuse.processing.processor import EncodedSample

TINY_LENGTHS = (32, 64, 128, 256)


@dataclass
class ScalingOptions:
    size: str = "small"
    images: tuple[int, ...] = (1, 2, 4, 8)
    lengths: tuple[int, ...] = (256, 512, 1024, 2048)
    batch_size: int = 4
    repeats: int = 3
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None


def image_records(work: Workload, images: int, batch_size: int, seed: int) -> list[dict]:
    """`batch_size` encoded samples with `images` images each and a short question and answer."""
    rng, image_rng = random.Random(seed), np.random.default_rng(seed)
    records = []
    for i in range(batch_size):
        messages = make_conversation(work, rng, images, False, image_rng)
        records.append({"messages": messages, "source": f"{images} images, sample {i}",
                        "encoded": work.processor.encode_conversation(messages)})
    return records


def text_record(work: Workload, length: int, seed: int) -> dict:
    """One text-only sample of exactly `length` tokens; the second half is the supervised answer."""
    generator = torch.Generator().manual_seed(seed)
    placeholders = {spec.placeholder_token_id for spec in work.model.config.modality_specs().values()}
    vocab = len(work.processor.tokenizer)
    ids = torch.randint(3, vocab, (length,), generator=generator).tolist()
    ids = [t if t not in placeholders else 3 for t in ids]
    labels = [IGNORE_INDEX] * (length // 2) + ids[length // 2 :]
    return {"messages": [], "source": f"text {length}", "encoded": EncodedSample(ids, labels)}


def fit_line(tokens: list[float], seconds: list[float]) -> dict[str, float]:
    """Least-squares seconds = intercept + slope * tokens, with R^2."""
    x, y = np.asarray(tokens, float), np.asarray(seconds, float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(((y - (intercept + slope * x)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum()) or 1.0
    r2 = 1 - residual / total
    return {"ms_per_1k_tokens": rounded(slope * 1e6), "intercept_s": rounded(intercept), "r2": rounded(r2)}


def run_scaling_bench(options: ScalingOptions) -> dict:
    """Both series, measured round-robin; one dict (the JSON line) with the table and the fits."""
    if options.repeats < 1 or options.batch_size < 1 or not options.images or not options.lengths:
        raise BenchError("--repeats and --batch-size must be positive, --images and --lengths non-empty")
    device, dtype = resolve_device(options.device, options.dtype)
    threads = set_threads(options.threads)
    lengths = TINY_LENGTHS if options.size == "tiny" and options.lengths == ScalingOptions.lengths else options.lengths
    work = build_workload(options.size, seed=options.seed, device=device, dtype=dtype)
    points = {("images", n): image_records(work, n, options.batch_size, options.seed) for n in options.images}
    points |= {("tokens", n): [text_record(work, n, options.seed)] for n in lengths}
    collator = primed_collator(work, list(points.values()))
    optimizer = torch.optim.AdamW(work.model.parameters(), lr=1e-5)
    work.model.train()
    times: dict[tuple[str, int], list[float]] = {key: [] for key in points}
    for round_index in range(options.repeats + 1):  # round 0 warms up every shape
        for key, records in points.items():
            seconds = train_step(work.model, optimizer, collator, records, device)[0]
            if round_index:
                times[key].append(seconds)
        log(f"round {round_index}/{options.repeats} done")
    return summarize(points, times, options, threads, lengths)


def summarize(points, times, options: ScalingOptions, threads: int, lengths) -> dict:
    tables: dict[str, list[dict]] = {"images": [], "tokens": []}
    for (series, n), records in points.items():
        tokens = sum(len(r["encoded"].input_ids) for r in records)
        step = median(times[(series, n)])
        row = {"images_per_sample" if series == "images" else "sequence_length": n, "tokens": tokens,
               "step_s": rounded(step), "ms_per_token": rounded(step / tokens * 1e3)}
        tables[series].append(row)
    fits = {name: fit_line([r["tokens"] for r in rows], [r["step_s"] for r in rows]) for name, rows in tables.items()}
    growth = {name: rounded(rows[-1]["ms_per_token"] / rows[0]["ms_per_token"], 3) for name, rows in tables.items()}
    return {
        "task": "bench-scaling",
        "ratio": growth["tokens"],
        "per_token_growth": growth,
        "images": tables["images"],
        "sequence": tables["tokens"],
        "fit": fits,
        "threads": threads,
        "options": asdict(options) | {"lengths": list(lengths)},
    }
