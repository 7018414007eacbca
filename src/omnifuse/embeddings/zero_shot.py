"""Zero-shot classification, CLIP-style: a medium against text prompts, scored in the shared space.

Example:
    >>> classify("runs/contrastive", [{"type": "image", "path": "x.png"}],
    ...          ["a photo of a red circle", "a photo of a blue square"])  # doctest: +SKIP
    {'label': 'a photo of a red circle', 'scores': {...}, 'results': [...]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.errors import UsageError


def label_probabilities(media: np.ndarray, labels: np.ndarray, logit_scale: float) -> np.ndarray:
    """Softmax over labels of the scaled cosine similarities, one row per medium."""
    logits = media @ labels.T * logit_scale
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def classify(model: str | Path | Any, items: list[dict], labels: list[str]) -> dict[str, Any]:
    """The best label per medium with every label's probability; `model` is a folder or an Embedder."""
    from omnifuse.embeddings.embed import Embedder

    if len(labels) < 2:
        raise UsageError("give at least two --labels to choose between")
    embedder = model if isinstance(model, Embedder) else Embedder.from_folder(model)
    probs = label_probabilities(
        embedder.embed(items), embedder.embed(list(labels)), float(embedder.heads.logit_scale.detach().exp())
    )
    results = [
        {"label": labels[int(row.argmax())], "scores": {lab: round(float(p), 4) for lab, p in zip(labels, row)}}
        for row in probs
    ]
    return {"label": results[0]["label"], "scores": results[0]["scores"], "results": results}
