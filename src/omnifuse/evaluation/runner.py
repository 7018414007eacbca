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

from omnifuse.processing.processor import OmniProcessor


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


@torch.no_grad()
def generate_answers(
    model, processor: OmniProcessor, items: Sequence[EvalItem], batch_size: int = 32, max_new_tokens: int = 24
) -> list[str]:
    """Greedy answers, batched with left padding (batch output equals one-by-one output)."""
    model.eval()
    tok = processor.tokenizer
    answers: list[str] = []
    for start in tqdm(range(0, len(items), batch_size), desc="eval", file=sys.stderr, leave=False):
        chunk = items[start : start + batch_size]
        samples = [processor.encode_conversation(item.messages, add_generation_prompt=True) for item in chunk]
        batch = processor.collate(samples, padding_side="left").to(model.device)
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        prompt_len = batch["input_ids"].shape[1]
        answers += [tok.decode(row[prompt_len:], skip_special_tokens=True) for row in out]
    return answers


def evaluate(model, processor: OmniProcessor, items: Sequence[EvalItem], batch_size: int = 32) -> dict:
    """Exact-match accuracy overall and per question type, plus the predictions."""
    predictions = generate_answers(model, processor, items, batch_size=batch_size)
    correct, total = Counter(), Counter()
    for item, pred in zip(items, predictions):
        total[item.question_type] += 1
        correct[item.question_type] += int(normalize(pred) == normalize(item.answer))
    per_question = {k: round(correct[k] / total[k], 4) for k in sorted(total)}
    accuracy = round(sum(correct.values()) / max(1, len(items)), 4)
    return {"accuracy": accuracy, "per_question": per_question, "counts": dict(total), "predictions": predictions}


def format_table(per_question: dict[str, float], chance: dict[str, float] | None = None) -> str:
    """A plain-text table: question type, accuracy, chance level."""
    chance = chance or {}
    lines = [f"{'question type':24s} {'accuracy':>9s} {'chance':>7s}"]
    for name, acc in per_question.items():
        level = f"{chance[name]:.2f}" if name in chance else "-"
        lines.append(f"{name:24s} {acc:9.2%} {level:>7s}")
    return "\n".join(lines)
