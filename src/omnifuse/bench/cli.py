"""`omnifuse bench {train,generate,preprocess,scaling,serve}`: each prints one JSON line of figures.

Example:
    $ omnifuse bench train --size small --steps 6
    {"task": "bench-train", "ratio": 1.6, ...}
"""

from __future__ import annotations

import argparse

from omnifuse.bench.common import SIZES, BenchError


def _size_args(parser: argparse.ArgumentParser, repeats: int | None = None, threads: int | None = None) -> None:
    parser.add_argument("--size", default="small", choices=SIZES, help="tiny (CI smoke run), small, large")
    parser.add_argument("--seed", type=int, default=0)
    default = threads or "torch's choice"
    parser.add_argument("--threads", type=int, default=threads, help=f"torch intra-op threads (default: {default})")
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, help="timed rounds per system")


def _device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def cmd_train(args: argparse.Namespace) -> dict:
    from omnifuse.bench.train import TrainOptions, run_train_bench

    return run_train_bench(TrainOptions(size=args.size, steps=args.steps, batch_size=args.batch_size,
                                        pack_length=args.pack_length, seed=args.seed, device=args.device,
                                        dtype=args.dtype, threads=args.threads))


def cmd_generate(args: argparse.Namespace) -> dict:
    from omnifuse.bench.generate import GenerateOptions, run_generate_bench

    return run_generate_bench(GenerateOptions(size=args.size, prompts=args.prompts, new_tokens=args.new_tokens,
                                              repeats=args.repeats, seed=args.seed, device=args.device,
                                              dtype=args.dtype, threads=args.threads))


def cmd_preprocess(args: argparse.Namespace) -> dict:
    from omnifuse.bench.preprocess import PreprocessOptions, run_preprocess_bench

    return run_preprocess_bench(PreprocessOptions(size=args.size, image_side=args.image_side, repeats=args.repeats,
                                                  seed=args.seed, threads=args.threads))


def cmd_scaling(args: argparse.Namespace) -> dict:
    from omnifuse.bench.scaling import ScalingOptions, run_scaling_bench

    return run_scaling_bench(ScalingOptions(size=args.size, images=args.images, lengths=args.lengths,
                                            batch_size=args.batch_size, repeats=args.repeats, seed=args.seed,
                                            device=args.device, dtype=args.dtype, threads=args.threads))


def cmd_serve(args: argparse.Namespace) -> dict:
    from omnifuse.bench.serve import run_serve_bench

    for name in ("clients", "requests", "max_tokens", "rounds"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be at least 1")
    return run_serve_bench(args.clients, args.requests, args.max_tokens, args.rounds, threads=args.threads)


def register(subparsers) -> None:
    """Add `bench` and its sub-commands to the `omnifuse` parser."""
    bench = subparsers.add_parser("bench", help="benchmarks against the ecosystem's baselines (one JSON line)")
    sub = bench.add_subparsers(dest="bench_command", required=True)

    p = sub.add_parser("train", help="packed omnifuse vs padded transformers LLaVA, same weights and batches")
    _size_args(p)
    _device_args(p)
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per system (the first is warm-up)")
    p.add_argument("--batch-size", type=int, default=16, help="samples per global batch")
    p.add_argument("--pack-length", type=int, default=None, help="omnifuse's packed row length")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="batched omnifuse generate vs LLaVA generate one prompt at a time")
    _size_args(p, repeats=3)
    _device_args(p)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("preprocess", help="images, audio, video vs transformers' processors")
    _size_args(p, repeats=5, threads=1)  # preprocessing runs in DataLoader workers, one torch thread each
    p.add_argument("--image-side", type=int, default=224)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("scaling", help="training step time vs images per sample and sequence length")
    _size_args(p, repeats=3)
    _device_args(p)
    p.add_argument("--images", type=_int_list, default=(1, 2, 4, 8), help="images per sample, e.g. 1,2,4,8")
    p.add_argument("--lengths", type=_int_list, default=(256, 512, 1024, 2048), help="text row lengths")
    p.add_argument("--batch-size", type=int, default=4, help="samples per step in the images series")
    p.set_defaults(func=cmd_scaling)

    p = sub.add_parser("serve", help="concurrent clients vs the same requests one at a time, via omnifuse serve")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server (1 on a busy CPU)")
    p.set_defaults(func=cmd_serve)
