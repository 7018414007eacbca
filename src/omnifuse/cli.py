"""The `omnifuse` command. Progress goes to stderr; commands with figures end with one JSON line on stdout.

Exit codes: 0 success, 2 bad input or usage (one-line reason on stderr), 1 internal failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from omnifuse.bench.cli import register as register_bench
from omnifuse.embeddings.cli import register as register_embeddings
from omnifuse.errors import OmnifuseInputError, UsageError
from omnifuse.pretrained.cli import register as register_pretrained
from omnifuse.serving.cli import register as register_serving

EXIT_BAD_INPUT = 2


def _emit(result: dict[str, Any]) -> None:
    from accelerate import PartialState

    if PartialState().is_main_process:  # under torchrun, one line, not one per process
        print(json.dumps(result, default=str), flush=True)


def cmd_demo(args: argparse.Namespace) -> dict:
    from omnifuse.demo.pipeline import run_demo

    return run_demo(out_dir=args.out, minutes=args.minutes, seed=args.seed, modalities=args.modalities)


def cmd_synth(args: argparse.Namespace) -> dict:
    from omnifuse.benchmark.generate import write_benchmark

    if args.n <= 0:
        raise UsageError(f"--n must be positive, got {args.n}")
    return write_benchmark(
        args.out, n=args.n, seed=args.seed, modalities=args.modalities, split=args.split, progress=True
    )


def cmd_train(args: argparse.Namespace) -> dict:
    from omnifuse.training.recipe import load_recipe
    from omnifuse.training.trainer import train

    return train(load_recipe(args.recipe, args.overrides))


def cmd_eval(args: argparse.Namespace) -> dict:
    from omnifuse.evaluation.dataset import evaluate_dataset

    result = evaluate_dataset(args.model, args.data, batch_size=args.batch_size, limit=args.limit)
    result.pop("predictions", None)
    return {"task": "eval", **result}


def cmd_export(args: argparse.Namespace) -> dict:
    from omnifuse.interop.llava import export_llava

    if args.format != "llava":
        raise UsageError(f"unsupported export format {args.format!r}; supported: llava")
    return {"task": "export", "format": "llava", **export_llava(args.model, args.out, overwrite=args.overwrite)}


def cmd_import(args: argparse.Namespace) -> dict:
    from omnifuse.interop.llava import import_llava
    from omnifuse.safety.paths import check_output_dir

    if args.format != "llava":
        raise UsageError(f"unsupported import format {args.format!r}; supported: llava")
    check_output_dir(args.out, what="--out", protected=[args.model])
    model, processor = import_llava(args.model)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    return {"task": "import", "format": "llava", "model_dir": args.out, "modalities": sorted(processor.specs)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnifuse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="synthesize the built-in benchmark, train, evaluate, save")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--minutes", type=float, default=None, help="training time budget in minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modalities", default="image,audio,video,mixed,text", help="a subset makes a shorter demo")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="write the built-in benchmark as messages JSONL + media")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--modalities", default="image,audio,video,mixed,text")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train per a YAML recipe; resumes from the newest checkpoint")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. stages.0.max_steps=10")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="exact-match accuracy per question type")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N records only")
    p.set_defaults(func=cmd_eval)

    register_serving(sub)  # serve, chat

    p = sub.add_parser("export", help="write a transformers-native checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--format", default="llava")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty --out (its files are replaced)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="turn a transformers LLaVA checkpoint into an omnifuse folder")
    p.add_argument("--model", required=True, help="the LLaVA folder")
    p.add_argument("--format", default="llava")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import)
    register_pretrained(sub)
    register_bench(sub)
    register_embeddings(sub)  # embed, classify, index; chat --rag / serve --rag-index
    return parser


def bad_input_types() -> tuple[type[BaseException], ...]:
    """Errors that mean the user's input was wrong (exit 2), not that omnifuse broke (exit 1)."""
    return (OmnifuseInputError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], Any] = args.func
    try:
        result = func(args)
    except KeyboardInterrupt:
        print("omnifuse: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - mapped to exit codes below
        if isinstance(err, bad_input_types()):
            reason = " ".join(str(err).split())  # one line, whatever the error's own layout
            print(f"omnifuse {args.command}: {reason}", file=sys.stderr)
            _emit({"task": args.command, "error": reason, "error_type": type(err).__name__})
            return EXIT_BAD_INPUT
        raise
    if isinstance(result, dict):
        _emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser"]
