"""Prompt embeddings with encoded media cached by content hash: a repeated image skips its encoder.

Example:
    >>> cache = EncodedMediaCache(max_items=256)
    >>> embeds = prompt_embeddings(model, sample, cache)   # (1, length, hidden)
    >>> cache.hits, cache.misses
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch

from omnifuse.errors import ModalityError
from omnifuse.modeling.fusion import scatter_features


def content_hash(name: str, values: torch.Tensor, mask: torch.Tensor | None) -> str:
    """Identifies a processed item: the modality, the shape and the exact tensor bytes (and its mask)."""
    digest = hashlib.sha256(f"{name}|{tuple(values.shape)}|{values.dtype}".encode())
    digest.update(values.detach().contiguous().numpy().tobytes())
    if mask is not None:
        digest.update(mask.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


class EncodedMediaCache:
    """LRU map content hash -> projected features `(tokens, hidden)`, bounded by item count."""

    def __init__(self, max_items: int = 256, metrics=None) -> None:
        self.max_items, self.metrics = max_items, metrics
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def features(self, model, name: str, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One item's projected features, from the cache or by running its encoder and projector."""
        if self.max_items <= 0:
            return model.encode_media(name, values, mask)
        key = content_hash(name, values, mask)
        with self._lock:
            cached = self._items.get(key)
            if cached is not None:
                self._items.move_to_end(key)
                self.hits += 1
                if self.metrics is not None:
                    self.metrics.media_cache_hits.inc()
                return cached
        features = model.encode_media(name, values, mask)
        if self.metrics is not None:
            self.metrics.media_cache_misses.inc()
        with self._lock:
            self.misses += 1
            self._items[key] = features
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return features


@torch.inference_mode()
def prompt_embeddings(model, input_ids: list[int], media: dict[str, list[torch.Tensor]], cache: EncodedMediaCache):
    """`(1, len(input_ids), hidden)` token embeddings with each medium's features at its placeholders."""
    ids = torch.tensor([input_ids], dtype=torch.long)
    embeds = model.get_input_embeddings()(ids)
    unknown = set(media) - set(model.config.media_keys())
    if unknown:
        raise ModalityError(f"media keys {sorted(unknown)} match no modality of this model")
    for name, spec in model.config.modality_specs().items():
        items = media.get(spec.batch_key)
        if not items:
            continue
        masks = media.get(spec.mask_key) or [None] * len(items)
        features = torch.cat([cache.features(model, name, v, m) for v, m in zip(items, masks)], dim=0)
        embeds = scatter_features(embeds, ids == spec.placeholder_token_id, features.to(embeds.dtype), modality=name)
    return embeds
