"""`omnifuse bench generate`: omnifuse's batched greedy generation against transformers' LLaVA, one prompt at a time.

The same 16 image prompts, the same weights (the baseline is the model's `export_llava` twin), greedy
decoding; the generated tokens must be identical, or the benchmark fails. Time to first token is
what `generate(max_new_tokens=1)` takes: for the batch, every prompt's first token arrives then; one
at a time, prompt k waits for the k prompts before it.

Example:
    >>> run_generate_bench(GenerateOptions(size="tiny", prompts=4, new_tokens=4))["identical"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch

from omnifuse.bench.common import (
    BenchError,
    alternate,
    log,
    median,
    resolve_device,
    rounded,
    set_threads,
    timed,
)
from omnifuse.bench.workload import Workload, build_workload, make_conversation


@dataclass
class GenerateOptions:
    size: str = "small"
    prompts: int = 16
    new_tokens: int = 32
    repeats: int = 3
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None


class OutputMismatch(AssertionError):
    """omnifuse and the baseline generated different tokens for the same prompt and weights."""


def image_prompts(work: Workload, count: int, seed: int) -> list[list[dict]]:
    """`count` user turns with one or two images each and a question, ready for a generation prompt."""
    rng, image_rng = random.Random(seed), np.random.default_rng(seed)
    return [make_conversation(work, rng, 1 + (i % 3 == 2), False, image_rng)[:1] for i in range(count)]


def trim(tokens: list[int], eos: set[int]) -> list[int]:
    """Generated tokens up to and including the first end token (what follows is padding).

    Example:
        >>> trim([5, 6, 2, 0, 0], {2})
        [5, 6, 2]
    """
    for position, token in enumerate(tokens):
        if token in eos:
            return tokens[: position + 1]
    return tokens


def end_tokens(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def to_device(inputs, device: torch.device) -> dict:
    return {key: value.to(device) for key, value in inputs.items()}


def run_generate_bench(options: GenerateOptions) -> dict:
    """Batched omnifuse vs one-at-a-time LLaVA: tokens/s, ratio, time to first token, identical outputs."""
    if options.prompts < 1 or options.new_tokens < 1 or options.repeats < 1:
        raise BenchError("--prompts, --new-tokens and --repeats must be positive")
    device, dtype = resolve_device(options.device, options.dtype)
    threads = set_threads(options.threads)
    log(f"building the {options.size} composite and its LLaVA twin")
    work = build_workload(options.size, seed=options.seed, device=device, dtype=dtype)
    work.model.eval()
    baseline = work.twin().eval()
    prompts = image_prompts(work, options.prompts, options.seed)
    processor = work.processor
    batch = to_device(processor.apply_chat_template(prompts, add_generation_prompt=True, padding_side="left"), device)
    singles = [to_device(processor.apply_chat_template(p, add_generation_prompt=True), device) for p in prompts]
    greedy = {"do_sample": False, "max_new_tokens": options.new_tokens}
    eos = end_tokens(work.model)

    @torch.no_grad()
    def batched(new_tokens: int = options.new_tokens) -> list[list[int]]:
        out = work.model.generate(**batch, **(greedy | {"max_new_tokens": new_tokens}))
        return [trim(row, eos) for row in out[:, batch["input_ids"].shape[1] :].tolist()]

    @torch.no_grad()
    def one_at_a_time(new_tokens: int = options.new_tokens) -> list[list[int]]:
        outs = []
        for single in singles:
            out = baseline.generate(**single, **(greedy | {"max_new_tokens": new_tokens}))
            outs.append(trim(out[0, single["input_ids"].shape[1] :].tolist(), eos))
        return outs

    ours, theirs = batched(), one_at_a_time()  # warm-up, and the outputs to compare
    mismatched = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    if mismatched:
        first = mismatched[0]
        raise OutputMismatch(f"prompts {mismatched} differ: omnifuse {ours[first]} vs baseline {theirs[first]}")
    log(f"outputs identical on {len(prompts)} prompts; timing {options.repeats} alternating rounds")
    times = alternate({"omnifuse": batched, "baseline": one_at_a_time}, repeats=options.repeats)
    ttft = first_token_times(batched, singles, baseline, greedy, device)
    generated = sum(len(t) for t in ours)
    return {
        "task": "bench-generate",
        "ratio": rounded(median(times["baseline"]) / median(times["omnifuse"]), 3),
        "omnifuse": {"tokens_per_s": rounded(generated / median(times["omnifuse"])),
                     "median_s": rounded(median(times["omnifuse"])), "ttft_s": ttft["omnifuse"]},
        "baseline": {"tokens_per_s": rounded(generated / median(times["baseline"])),
                     "median_s": rounded(median(times["baseline"])), "ttft_alone_s": ttft["alone"],
                     "ttft_queued_mean_s": rounded(ttft["alone"] + median(times["baseline"]) / len(prompts)
                                                   * (len(prompts) - 1) / 2),
                     "name": "transformers LlavaForConditionalGeneration.generate, one prompt at a time"},
        "identical": True,
        "prompts": len(prompts),
        "generated_tokens": generated,
        "threads": threads,
        "options": asdict(options),
    }


def first_token_times(batched, singles, baseline, greedy, device: torch.device) -> dict[str, float]:
    """Median time to the first token: the whole batch at once, and one prompt alone on an idle model."""
    batch_times = [timed(lambda: batched(1), device)[0] for _ in range(3)]
    alone = []
    with torch.no_grad():
        for single in singles:
            alone.append(timed(lambda s=single: baseline.generate(**s, **(greedy | {"max_new_tokens": 1})), device)[0])
    return {"omnifuse": rounded(median(batch_times)), "alone": rounded(median(alone))}
