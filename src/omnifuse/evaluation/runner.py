"""Exact-match evaluation per question type: generate an answer for each record, compare, tabulate.

Example:
    >>> result = evaluate(model, processor, records)
    >>> result["accuracy"], result["per_question"]["image_color"]
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from omnifuse.errors import OmnifuseInputError, UsageError
from omnifuse.processing.processor import EncodedSample, OmniProcessor
from omnifuse.safety.limits import check_count, check_prompt_tokens

MAX_REPORTED_SKIPS = 20  # skips listed in the result; all are counted and printed to stderr


@dataclass
class EvalItem:
    """A prompt (messages without the final assistant answer), its reference answer and its type."""

    messages: list[dict]
    answer: str
    question_type: str
    source: str = ""


def split_answer(messages: list[dict], question_type: str = "all", source: str = "") -> EvalItem:
    """Take the last assistant turn off a conversation as the reference answer."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError(f"{source or 'record'}: the last message must be the assistant's answer")
    content = messages[-1]["content"]
    answer = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
    return EvalItem(messages[:-1], answer.strip(), question_type, source)


def normalize(text: str) -> str:
    return " ".join(text.strip().split())


@dataclass
class EvalSkip:
    """A record that could not be evaluated, with where it is (`file:line`) and why."""

    source: str
    reason: str


def encode_items(
    processor: OmniProcessor, items: Sequence[EvalItem]
) -> tuple[list[tuple[EvalItem, EncodedSample]], list[EvalSkip]]:
    """Encode every prompt; one whose media or text cannot be used is skipped with its reason, not fatal."""
    encoded, skips = [], []
    for item in items:
        try:
            sample = processor.encode_conversation(item.messages, add_generation_prompt=True)
            check_prompt_tokens(len(sample.input_ids), processor.max_positions)
        except (OmnifuseInputError, ValueError) as err:  # bad input in this one record
            skips.append(EvalSkip(item.source or "record", " ".join(str(err).split())))
            print(f"skipped {skips[-1].source}: {skips[-1].reason}", file=sys.stderr)
            continue
        encoded.append((item, sample))
    return encoded, skips


@torch.no_grad()
def generate_answers(
    model, processor: OmniProcessor, samples: Sequence[EncodedSample], batch_size: int = 32, max_new_tokens: int = 24
) -> list[str]:
    """Greedy answers to encoded prompts, batched with left padding (batch output equals one-by-one output)."""
    check_count("batch_size", batch_size)
    model.eval()
    answers: list[str] = []
    for start in range(0, len(samples), batch_size):
        answers += _answer_batch(model, processor, samples[start : start + batch_size], max_new_tokens)
    return answers


def _answer_batch(model, processor: OmniProcessor, samples: Sequence[EncodedSample], max_new_tokens: int) -> list[str]:
    tok = processor.tokenizer
    batch = processor.collate(list(samples), padding_side="left").to(model.device)
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    prompt_len = batch["input_ids"].shape[1]
    return [tok.decode(row[prompt_len:], skip_special_tokens=True) for row in out]


def evaluate(model, processor: OmniProcessor, items: Sequence[EvalItem], batch_size: int = 32) -> dict:
    """Exact-match accuracy overall and per question type over the usable records, plus the predictions.

    Records are encoded one batch at a time (media of the whole set are never held at once); those that
    cannot be encoded are counted in `skipped` (their `file:line` and reason in `skips`), and
    `predictions` follows `items`, with None for a skipped record.
    """
    check_count("batch_size", batch_size)
    if not items:
        raise UsageError("no records to evaluate")
    answered: list[tuple[EvalItem, str]] = []
    skips: list[EvalSkip] = []
    with torch.no_grad():
        model.eval()
        for start in tqdm(range(0, len(items), batch_size), desc="eval", file=sys.stderr, leave=False):
            encoded, chunk_skips = encode_items(processor, items[start : start + batch_size])
            skips += chunk_skips
            if encoded:
                answers = _answer_batch(model, processor, [sample for _, sample in encoded], max_new_tokens=24)
                answered += [(item, answer) for (item, _), answer in zip(encoded, answers)]
    if not answered:
        raise UsageError(
            f"none of the {len(items)} records could be evaluated; first: {skips[0].source}: {skips[0].reason}"
        )
    by_item = {id(item): answer for item, answer in answered}
    predictions = [by_item.get(id(item)) for item in items]  # None where the record was skipped
    correct, total = Counter(), Counter()
    for item, pred in answered:
        total[item.question_type] += 1
        correct[item.question_type] += int(normalize(pred) == normalize(item.answer))
    per_question = {k: round(correct[k] / total[k], 4) for k in sorted(total)}
    accuracy = round(sum(correct.values()) / len(answered), 4)
    return {
        "accuracy": accuracy,
        "per_question": per_question,
        "counts": dict(total),
        "evaluated": len(answered),
        "skipped": len(skips),
        "skips": [f"{skip.source}: {skip.reason}" for skip in skips[:MAX_REPORTED_SKIPS]],
        "predictions": predictions,
    }


def with_invalid_records(result: dict, invalid: list[str]) -> dict:
    """Count records that failed validation (before encoding) among the result's skips."""
    skips = [*invalid, *result["skips"]]
    return {**result, "skipped": result["skipped"] + len(invalid), "skips": skips[:MAX_REPORTED_SKIPS]}


def format_table(per_question: dict[str, float], chance: dict[str, float] | None = None) -> str:
    """A plain-text table: question type, accuracy, chance level."""
    chance = chance or {}
    lines = [f"{'question type':24s} {'accuracy':>9s} {'chance':>7s}"]
    for name, acc in per_question.items():
        level = f"{chance[name]:.2f}" if name in chance else "-"
        lines.append(f"{name:24s} {acc:9.2%} {level:>7s}")
    return "\n".join(lines)
