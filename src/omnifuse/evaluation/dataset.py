"""`omnifuse eval`: load a saved model folder and a dataset, report exact match per question type."""

from __future__ import annotations

import sys
from pathlib import Path

from omnifuse.data.sources import validate_dataset
from omnifuse.evaluation.runner import EvalItem, evaluate, split_answer, with_invalid_records
from omnifuse.modeling.folder import load_omni_folder
from omnifuse.safety.limits import check_eval_arguments


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
    model, processor = load_omni_folder(model_dir)
    invalid: list[str] = []
    items = eval_items(data, limit, invalid)
    return with_invalid_records(evaluate(model, processor, items, batch_size=batch_size), invalid)
