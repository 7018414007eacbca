"""`Embedder`: texts and media -> L2-normalised vectors in one shared space (heads + towers + model).

Example:
    >>> embedder = Embedder.from_folder("runs/contrastive")  # doctest: +SKIP
    >>> vectors = embedder.embed(["a red circle.", {"type": "image", "path": "circle.png"}])  # doctest: +SKIP
    >>> vectors.shape  # doctest: +SKIP
    (2, 64)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnifuse.embeddings.heads import EmbeddingHeads, load_heads
from omnifuse.embeddings.media import PreparedItem, encode_items, prepare_item
from omnifuse.embeddings.towers import TextTower, build_text_tower
from omnifuse.errors import UsageError

Item = str | dict[str, Any]  # a text, or a content part such as {"type": "image", "path": ...}


class Embedder(nn.Module):
    """The composite model's encoders + pooling heads + a text tower, as one module (trainable too)."""

    def __init__(self, model: nn.Module, processor, heads: EmbeddingHeads, text_tower: TextTower | None = None):
        super().__init__()
        self.model, self.heads = model, heads
        self.processor = processor
        tower = text_tower or build_text_tower(heads.config.text_tower, model, processor.tokenizer)
        self._tower = [tower]  # a list: the LM tower's weights are the model's, never registered twice
        if tower.encoder is not model.language_model.base_model:
            self.external_text = tower.encoder  # an external encoder is registered, so .to(device) moves it

    @property
    def text_tower(self) -> TextTower:
        return self._tower[0]

    @classmethod
    def from_folder(cls, folder: str | Path) -> Embedder:
        """Model, processor and heads of a folder trained with a `contrastive` stage (eval mode)."""
        from omnifuse.modeling.folder import load_omni_folder

        heads = load_heads(folder)
        model, processor = load_omni_folder(folder)
        return cls(model, processor, heads).eval()

    # -- differentiable parts (training and inference) --
    def media_vectors(self, items: list[PreparedItem]) -> torch.Tensor:
        """(items, dim) normalised; items of several modalities are encoded per modality, order kept."""
        out: list[torch.Tensor | None] = [None] * len(items)
        for name in dict.fromkeys(it.modality for it in items):
            rows = [i for i, it in enumerate(items) if it.modality == name]
            tokens, mask = encode_items(self.model, name, [items[i] for i in rows])
            pooled = F.normalize(self.heads.head_for(name)(tokens.float(), mask), dim=-1)
            for i, vector in zip(rows, pooled):
                out[i] = vector
        return torch.stack(out)  # type: ignore[arg-type]

    def text_vectors(self, texts: list[str]) -> torch.Tensor:
        hidden, mask = self.text_tower(texts)
        return F.normalize(self.heads.text(hidden.float(), mask), dim=-1)

    # -- inference --
    @torch.no_grad()
    def embed(self, items: list[Item], batch_size: int = 32) -> np.ndarray:
        """Vectors (float32, unit length) for texts and media parts, in order, `batch_size` at a time."""
        if not items:
            raise UsageError("nothing to embed: give at least one text or media item")
        chunks = [self._embed_batch(items[i : i + batch_size], i) for i in range(0, len(items), batch_size)]
        return np.concatenate(chunks).astype(np.float32)

    def _embed_batch(self, items: list[Item], offset: int) -> np.ndarray:
        out = np.zeros((len(items), self.heads.config.dim), dtype=np.float32)
        texts = [i for i, it in enumerate(items) if isinstance(it, str)]
        media = [i for i, it in enumerate(items) if not isinstance(it, str)]
        if texts:
            out[texts] = self.text_vectors([items[i] for i in texts]).cpu().numpy()
        if media:
            for i in media:
                if not isinstance(items[i], dict) or "type" not in items[i]:
                    raise UsageError(f"item {offset + i}: expected a text or a content part with a 'type'")
            prepared = [prepare_item(self.processor, items[i], f"item {offset + i}") for i in media]
            out[media] = self.media_vectors(prepared).cpu().numpy()
        return out

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Similarity logits with the learned scale and bias (the loss's own)."""
        return a @ b.T * self.heads.logit_scale.exp() + self.heads.logit_bias


def embed(model: nn.Module, processor, items: list[Item], heads: EmbeddingHeads | None = None, **kw) -> np.ndarray:
    """Functional form: `embed(model, processor, ["a red circle.", {"type": "image", "path": "x.png"}])`.

    `heads` defaults to `model.embedding_heads` (set by `load_heads` users) and must be given otherwise.
    """
    heads = heads if heads is not None else getattr(model, "embedding_heads", None)
    if heads is None:
        raise UsageError("no embedding heads: pass heads=load_heads(folder)")
    return Embedder(model, processor, heads).eval().embed(items, **kw)
