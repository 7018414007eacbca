"""Demo outputs a person looks at: a results table with chance levels and a gallery of test images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from omnifuse.evaluation.runner import EvalItem  # noqa: E402


def first_image_path(item: EvalItem) -> str | None:
    for message in item.messages:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") == "image" and part.get("path"):
                return part["path"]
    return None


def question_text(item: EvalItem) -> str:
    texts = [p.get("text", "") for m in item.messages for p in m["content"] if isinstance(p, dict)]
    return " ".join(t for t in texts if t)


def save_gallery(items: Sequence[EvalItem], predictions: Sequence[str], path: str | Path, count: int = 12) -> Path:
    """Test images with question, reference answer and prediction (green when right, red when wrong)."""
    shown = [(item, pred) for item, pred in zip(items, predictions) if first_image_path(item)][:count]
    cols = 4
    rows = max(1, (len(shown) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2, rows * 3.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (item, pred) in zip(axes.flat, shown):
        ax.imshow(Image.open(first_image_path(item)).convert("RGB"), interpolation="nearest")
        ok = pred.strip() == item.answer.strip()
        ax.set_title(
            f"{question_text(item)[:38]}\nanswer: {item.answer[:30]}\nmodel: {pred.strip()[:30]}",
            fontsize=7,
            color="green" if ok else "red",
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
