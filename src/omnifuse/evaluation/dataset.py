"""`omnifuse eval`: load a saved model folder and a dataset, report exact match per question type."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from omnifuse.data.sources import validate_dataset
from omnifuse.evaluation.runner import EvalItem, evaluate, split_answer, with_invalid_records
from omnifuse.safety.limits import check_eval_arguments
from omnifuse.safety.model_files import check_model_folder_files


def load_model_folder(folder: str | Path):
    """An omnifuse model + processor saved together (what `omnifuse train` and `omnifuse demo` write)."""
    from omnifuse import OmniForConditionalGeneration, OmniProcessor

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json here; pass a folder written by save_pretrained")
    check_model_folder_files(folder)  # missing weights or processor, broken JSON: one-line errors, not tracebacks
    model = OmniForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    return model.eval(), OmniProcessor.from_pretrained(folder)


def eval_items(data: str | Path, limit: int | None = None, invalid: list[str] | None = None) -> list[EvalItem]:
    """Records with their last assistant turn split off as the reference; skips are reported, not hidden."""
    records, report = validate_dataset(data)
    if report.skipped:
        print(report.format(), file=sys.stderr)
        if invalid is not None:  # the caller counts them in its result
            invalid += [f"{skip.source}: {skip.reason}" for skip in report.skipped]
    if not records:
        raise FileNotFoundError(f"{data}: no usable records")
    records = records[:limit] if limit else records
    return [split_answer(r.messages, str(r.extra.get("question_type", "all")), r.source) for r in records]


def evaluate_dataset(model_dir: str | Path, data: str | Path, batch_size: int = 32, limit: int | None = None) -> dict:
    check_eval_arguments(batch_size, limit)
    model, processor = load_model_folder(model_dir)
    invalid: list[str] = []
    items = eval_items(data, limit, invalid)
    return with_invalid_records(evaluate(model, processor, items, batch_size=batch_size), invalid)
