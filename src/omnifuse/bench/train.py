"""`omnifuse bench train`: omnifuse (packed rows) against transformers' LLaVA (padded batches), same weights.

Both models start from identical weights, see the same global batches in the same order and use the
same optimizer; steps alternate between them. omnifuse packs each global batch into rows of
`pack_length` tokens with block-diagonal attention; the baseline pads the batch to its longest sample,
as LLaVA's and LLaMA-Factory's collators do. Both losses are the mean over every supervised token of
the global batch, so the two loss curves must agree to float noise.

Example:
    >>> result = run_train_bench(TrainOptions(size="tiny", steps=3, batch_size=4))  # doctest: +SKIP
    >>> result["task"], result["ratio"] > 0  # doctest: +SKIP
    ('bench-train', True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from omnifuse.bench.common import (
    BenchError,
    MemoryWatch,
    log,
    matmul_peak_flops,
    median,
    process_peak_rss_mb,
    resolve_device,
    rounded,
    set_threads,
    timed,
)
from omnifuse.bench.workload import Workload, build_workload, make_conversations
from omnifuse.data.collator import MultimodalCollator
from omnifuse.processing.chat import IGNORE_INDEX
from omnifuse.processing.processor import EncodedSample
from omnifuse.training.supervised_head import supervised_loss_sum

# Rows just above the longest sample: first-fit still packs tightly, and the block-diagonal attention
# (computed over whole rows) stays cheaper than the baseline's padded attention.
PACK_LENGTH = {"tiny": 128, "small": 512, "large": 1024}
TOKEN_KEYS = ("input_ids", "attention_mask", "labels", "position_ids")


@dataclass
class TrainOptions:
    size: str = "small"
    steps: int = 8
    batch_size: int = 16
    pack_length: int | None = None
    lr: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None


@dataclass
class StepRecord:
    seconds: float
    loss: float
    peak_rss_mb: float


def encode_batches(work: Workload, options: TrainOptions) -> list[list[dict]]:
    """Global batches of records, each with its conversation already encoded (tokens + pixels)."""
    conversations = make_conversations(work, options.steps * options.batch_size, seed=options.seed)
    records = [
        {"messages": messages, "source": f"sample {i}", "encoded": work.processor.encode_conversation(messages)}
        for i, messages in enumerate(conversations)
    ]
    return [records[i : i + options.batch_size] for i in range(0, len(records), options.batch_size)]


def primed_collator(work: Workload, batches: list[list[dict]], **kwargs) -> MultimodalCollator:
    """A collator whose encode cache already holds every record: steps time collation, not media decoding."""
    collator = MultimodalCollator(work.processor, cache_encoded=True, **kwargs)
    for record in (r for batch in batches for r in batch):
        collator.cache[record["source"]] = record["encoded"]
    return collator


def train_step(model, optimizer, collator, records, device: torch.device) -> tuple[float, float, float]:
    """Collate, forward, backward, optimizer step; returns (seconds, loss, peak RSS growth in MiB)."""

    def step() -> float:
        batch = {key: value.to(device) for key, value in collator(records).items()}
        total = supervised_loss_sum(model, batch)  # omnifuse's trainer loss; None for the LLaVA baseline
        supervised = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        loss = model(**batch, use_cache=False).loss if total is None else total / supervised
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    with MemoryWatch() as watch:
        seconds, loss = timed(step, device)
    return seconds, loss, (watch.peak_bytes - watch.start_bytes) / 2**20


def batch_shape(collator: MultimodalCollator, records: list[dict]) -> dict[str, int]:
    """Useful (sample) tokens, tokens the model computes on (rows x width), images in the batch."""
    batch = collator(records)
    samples: list[EncodedSample] = [r["encoded"] for r in records]
    media = [t for s in samples for values in s.media.values() for t in values]
    return {
        "useful": sum(len(s.input_ids) for s in samples),
        "computed": batch["input_ids"].numel(),
        "images": sum(int(t.shape[0]) for t in media),
    }


def step_flops(work: Workload, shape: dict[str, int]) -> float:
    """6 x parameters x tokens, the LM on its useful tokens and the vision side on its image patches.

    The input embedding is a lookup, not a matmul, so its parameters are left out.
    """
    split = work.parameter_split()
    lm = split["language_model"] - work.model.get_input_embeddings().weight.numel()
    return 6.0 * (lm * shape["useful"] + split["vision"] * shape["images"] * work.image_tokens)


def run_train_bench(options: TrainOptions) -> dict:
    """Run both trainings side by side and return the figures (the command's JSON line)."""
    if options.steps < 2 or options.batch_size < 1:
        raise BenchError(f"--steps must be >= 2 and --batch-size >= 1, got {options.steps} and {options.batch_size}")
    device, dtype = resolve_device(options.device, options.dtype)
    threads = set_threads(options.threads)
    log(f"building the {options.size} composite and its LLaVA twin ({options.device}, {options.dtype})")
    work = build_workload(options.size, seed=options.seed, device=device, dtype=dtype)
    baseline = work.twin()
    batches = encode_batches(work, options)
    longest = max(len(r["encoded"].input_ids) for batch in batches for r in batch)
    pack_length = max(options.pack_length or PACK_LENGTH[options.size], longest)
    systems = {
        "omnifuse": (work.model, primed_collator(work, batches, packing=True, pack_length=pack_length)),
        "baseline": (baseline, primed_collator(work, batches)),
    }
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=options.lr) for name, (model, _) in systems.items()}
    for model, _ in systems.values():
        model.train()
    matmul_side = 512 if options.size == "tiny" else 2048
    peak = matmul_peak_flops(device, dtype, n=matmul_side)
    records: dict[str, list[StepRecord]] = {name: [] for name in systems}
    for index, batch in enumerate(batches):
        order = list(systems) if index % 2 == 0 else list(systems)[::-1]
        for name in order:
            model, collator = systems[name]
            seconds, loss, rss = train_step(model, optimizers[name], collator, batch, device)
            records[name].append(StepRecord(seconds, loss, rss))
        log(f"step {index + 1}/{len(batches)}: " + ", ".join(
            f"{n} {records[n][-1].seconds:.2f}s loss {records[n][-1].loss:.4f}" for n in systems))
    peak = max(peak, matmul_peak_flops(device, dtype, n=matmul_side))
    shapes = {name: [batch_shape(collator, b) for b in batches] for name, (_, collator) in systems.items()}
    result = summarize(work, options, records, shapes, peak, threads, pack_length)
    if device.type == "cuda":  # host RSS says little on an accelerator; its own peak does
        result["device_peak_memory_mb"] = rounded(torch.cuda.max_memory_allocated(device) / 2**20, 5)
        result["device_name"] = torch.cuda.get_device_name(device)
    return result


def summarize(work: Workload, options: TrainOptions, records: dict[str, list[StepRecord]],
              shapes: dict[str, list[dict[str, int]]], peak: float, threads: int, pack_length: int) -> dict:
    """Medians over the timed steps (the first step is warm-up), the paired ratio, MFU and the loss match."""
    timed_steps = range(1, len(records["omnifuse"]))
    figures = {}
    for name, steps in records.items():
        seconds = sum(steps[i].seconds for i in timed_steps)
        useful = sum(shapes[name][i]["useful"] for i in timed_steps)
        computed = sum(shapes[name][i]["computed"] for i in timed_steps)
        flops = sum(step_flops(work, shapes[name][i]) for i in timed_steps)
        figures[name] = {
            "tokens_per_s": rounded(useful / seconds),
            "median_step_s": rounded(median([steps[i].seconds for i in timed_steps])),
            "padding_fraction": rounded(1 - useful / computed, 3),
            "mfu": rounded(flops / seconds / peak, 3),
            "step_peak_rss_mb": rounded(max(s.peak_rss_mb for s in steps), 4),
            "final_loss": rounded(steps[-1].loss, 6),
        }
    paired = [records["baseline"][i].seconds / records["omnifuse"][i].seconds for i in timed_steps]
    losses = [(a.loss, b.loss) for a, b in zip(records["omnifuse"], records["baseline"])]
    spread = max(loss for pair in losses for loss in pair) - min(loss for pair in losses for loss in pair)
    return {
        "task": "bench-train",
        "ratio": rounded(median(paired), 3),
        "throughput_ratio": rounded(figures["omnifuse"]["tokens_per_s"] / figures["baseline"]["tokens_per_s"], 3),
        "omnifuse": figures["omnifuse"],
        "baseline": figures["baseline"] | {"name": "transformers LlavaForConditionalGeneration, padded batches"},
        "mfu": figures["omnifuse"]["mfu"],
        "matmul_peak_gflops": rounded(peak / 1e9),
        "loss_max_abs_diff": rounded(max(abs(a - b) for a, b in losses), 3),
        "loss_range": rounded(spread, 3),
        "losses_match": max(abs(a - b) for a, b in losses) <= max(1e-3, 0.01 * spread),
        "tokens_per_step": rounded(sum(s["useful"] for s in shapes["omnifuse"]) / len(shapes["omnifuse"]), 5),
        "parameters": work.parameter_split(),
        "process_peak_rss_mb": rounded(process_peak_rss_mb(), 5),
        "pack_length": pack_length,
        "threads": threads,
        "options": asdict(options),
    }
