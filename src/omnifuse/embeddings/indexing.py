"""Datasets into an index, and queries against it: the work behind `omnifuse index build|add|search`.

Every media part of a record's user turn becomes one item (`<record id>/<modality><k>`), and the
record's answer text one more (`<record id>/text`); each payload keeps the path, the kind and the
record's answer text (the caption), so a hit can be shown, cited and fed to a chat model.

Example:
    >>> build_index("runs/contrastive", "data/pairs/data.jsonl", "runs/idx")  # doctest: +SKIP
    {'task': 'index-build', 'items': 2000, 'items_per_s': 412.3, ...}
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from omnifuse.data.sources import MessagesDataset
from omnifuse.embeddings.embed import Embedder, Item
from omnifuse.embeddings.index import VectorIndex, VectorIndexError
from omnifuse.processing.parts import part_modality


def record_items(record, index: int, with_text: bool = True) -> list[tuple[str, Item, dict[str, Any]]]:
    """(item id, what to embed, payload) for each media part of the user turns and for the answer."""
    record_id = str(record.extra.get("id") or record.source or index)
    answer = ""
    media: list[dict] = []
    for message in record.messages:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        if message.get("role") == "user":
            media += [p for p in parts if part_modality(p.get("type")) is not None]
        elif message.get("role") == "assistant" and not answer:
            answer = " ".join(p.get("text", "") for p in parts if p.get("type") == "text").strip()
    out = []
    for k, part in enumerate(media):
        kind = part_modality(part["type"])
        payload = {"kind": kind, "path": str(part.get("path", "")), "text": answer, "record": record_id}
        out.append((f"{record_id}/{kind}{k}", part, payload))
    if with_text and answer:
        out.append((f"{record_id}/text", answer, {"kind": "text", "path": "", "text": answer, "record": record_id}))
    return out


def dataset_items(data: str | Path, with_text: bool = True) -> list[tuple[str, Item, dict[str, Any]]]:
    dataset = MessagesDataset.from_path(data)
    items = [item for i, record in enumerate(dataset.records) for item in record_items(record, i, with_text)]
    if not items:
        raise VectorIndexError(f"{data}: no media or answer text to index")
    return items


def fill_index(index: VectorIndex, embedder: Embedder, items: list, batch_size: int = 64) -> dict[str, Any]:
    """Embed and upsert items batch by batch; returns counts and the rate (embedding included)."""
    from tqdm import tqdm

    started = time.perf_counter()
    for start in tqdm(range(0, len(items), batch_size), desc="index", unit="batch", file=sys.stderr):
        chunk = items[start : start + batch_size]
        vectors = embedder.embed([it[1] for it in chunk], batch_size=batch_size)
        index.add([it[0] for it in chunk], vectors, [it[2] for it in chunk])
    seconds = time.perf_counter() - started
    return {"items": len(items), "seconds": round(seconds, 3), "items_per_s": round(len(items) / max(seconds, 1e-9), 1)}


def build_index(
    model_dir: str | Path, data: str | Path, out: str | Path, batch_size: int = 64, overwrite: bool = False
) -> dict[str, Any]:
    embedder = Embedder.from_folder(model_dir)
    items = dataset_items(data)
    index = VectorIndex.create(out, embedder.heads.config.dim, model_dir, overwrite=overwrite)
    try:
        stats = fill_index(index, embedder, items, batch_size)
        total = index.count()
    finally:
        index.close()
    return {"task": "index-build", "index": str(out), "count": total, **stats}


def add_to_index(index_dir: str | Path, data: str | Path, batch_size: int = 64) -> dict[str, Any]:
    index = VectorIndex.open(index_dir)
    try:
        embedder = Embedder.from_folder(index.manifest["model"])
        stats = fill_index(index, embedder, dataset_items(data), batch_size)
        total = index.count()
    finally:
        index.close()
    return {"task": "index-add", "index": str(index_dir), "count": total, **stats}


def delete_from_index(index_dir: str | Path, ids: list[str]) -> dict[str, Any]:
    index = VectorIndex.open(index_dir)
    try:
        before = index.count()
        index.delete(ids)
        after = index.count()
    finally:
        index.close()
    return {"task": "index-delete", "index": str(index_dir), "deleted": before - after, "count": after}


def search_index(
    index_dir: str | Path, query: Item, k: int = 5, kind: str | None = None, embedder: Embedder | None = None
) -> list[dict[str, Any]]:
    """Top-k hits for a text or a media part, embedded with the model the index was built with."""
    index = VectorIndex.open(index_dir)
    try:
        embedder = embedder or Embedder.from_folder(index.manifest["model"])
        return index.search(embedder.embed([query])[0], k=k, kind=kind)
    finally:
        index.close()
