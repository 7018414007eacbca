"""A vector index on Qdrant: embedded (local folder) on one machine, the same client API on a server.

`VectorIndex.create(folder, dim, model_dir)` / `VectorIndex.open(folder)` use Qdrant's local mode
(`QdrantClient(path=...)`: in-process, persisted in the folder, exact cosine search with numpy).
`VectorIndex.connect(url, collection)` talks to a Qdrant server or cluster with the same calls, for
when an index outgrows one process. An `index.json` beside the data names the model that embedded it.

Example:
    >>> index = VectorIndex.create("runs/idx", dim=64, model_dir="runs/contrastive")  # doctest: +SKIP
    >>> index.add(["a"], vectors, [{"path": "a.png", "kind": "image"}])  # doctest: +SKIP
    >>> index.search(query_vector, k=5)[0]["id"]  # doctest: +SKIP
    'a'
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.errors import OmnifuseInputError

MANIFEST = "index.json"
COLLECTION = "omnifuse"
FORMAT_VERSION = 1
UPSERT_BATCH = 1024


class VectorIndexError(OmnifuseInputError):
    """An index folder that is missing, corrupt, locked, or used with vectors of the wrong size."""


def relax_local_sync(client, collection: str) -> bool:
    """Qdrant's local mode commits (and fsyncs) its sqlite file once per point: ~25 ms each here, 40
    points/s. WAL with synchronous=NORMAL keeps every commit safe from a process crash (not from a power
    cut for the last ones) at thousands of points/s. Reaches into the local client; a no-op elsewhere."""
    try:
        storage = client._client.collections[collection].storage.storage  # sqlite3.Connection
        storage.execute("PRAGMA journal_mode=WAL")
        storage.execute("PRAGMA synchronous=NORMAL")
        return True
    except (AttributeError, KeyError, TypeError):
        return False


def point_id(item_id: str) -> str:
    """Qdrant ids are integers or UUIDs: a stable UUID per item id (so delete-by-id works)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"omnifuse:{item_id}"))


class VectorIndex:
    """Add / delete / search unit vectors with payloads (id, path, kind, text)."""

    def __init__(self, client, collection: str, manifest: dict[str, Any], folder: Path | None = None):
        self.client, self.collection, self.manifest, self.folder = client, collection, manifest, folder

    # -- opening --
    @classmethod
    def create(cls, folder: str | Path, dim: int, model_dir: str | Path, overwrite: bool = False) -> VectorIndex:
        from qdrant_client import QdrantClient, models

        folder = Path(folder)
        if (folder / MANIFEST).exists() and not overwrite:
            raise VectorIndexError(f"{folder} already holds an index; add to it with `index add`, or pass --overwrite")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT_VERSION, "dim": int(dim), "model": str(Path(model_dir).resolve())}
        client = QdrantClient(path=str(folder / "qdrant"))
        if client.collection_exists(COLLECTION):
            client.delete_collection(COLLECTION)
        vectors = models.VectorParams(size=int(dim), distance=models.Distance.COSINE)
        client.create_collection(COLLECTION, vectors_config=vectors)
        relax_local_sync(client, COLLECTION)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return cls(client, COLLECTION, manifest, folder)

    @classmethod
    def open(cls, folder: str | Path) -> VectorIndex:
        """An index written by `create`; IndexFileError naming the problem otherwise."""
        from qdrant_client import QdrantClient

        folder = Path(folder)
        manifest = read_manifest(folder)
        try:
            client = QdrantClient(path=str(folder / "qdrant"))
            if not client.collection_exists(COLLECTION):
                raise VectorIndexError(f"{folder}: the vector data is missing (no '{COLLECTION}' collection)")
            client.count(COLLECTION)
            relax_local_sync(client, COLLECTION)
        except VectorIndexError:
            raise
        except Exception as err:  # qdrant's local storage raises plain errors on bad files or a held lock
            raise VectorIndexError(f"{folder}: the index data cannot be read ({type(err).__name__}: {err})") from None
        return cls(client, COLLECTION, manifest, folder)

    @classmethod
    def connect(cls, url: str, collection: str = COLLECTION, api_key: str | None = None) -> VectorIndex:
        """The same index API on a Qdrant server or cluster (`docker run qdrant/qdrant`, Qdrant Cloud)."""
        from qdrant_client import QdrantClient

        client = QdrantClient(url=url, api_key=api_key)
        info = client.get_collection(collection)
        manifest = {"format": FORMAT_VERSION, "dim": info.config.params.vectors.size, "model": None}
        return cls(client, collection, manifest)

    def close(self) -> None:
        self.client.close()

    # -- writing --
    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise VectorIndexError(f"vectors of shape {tuple(vectors.shape)} do not fit this index (dim {self.dim})")
        return vectors

    def add(self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> int:
        """Insert or replace items by id; returns the number written."""
        from qdrant_client import models

        vectors = self._check(vectors)
        if not (len(ids) == len(vectors) == len(payloads)):
            raise VectorIndexError(
                f"{len(ids)} ids, {len(vectors)} vectors and {len(payloads)} payloads differ in count"
            )
        for start in range(0, len(ids), UPSERT_BATCH):
            points = [
                models.PointStruct(id=point_id(i), vector=v.tolist(), payload={**p, "id": i})
                for i, v, p in zip(ids[start : start + UPSERT_BATCH], vectors[start:], payloads[start:])
            ]
            self.client.upsert(self.collection, points=points, wait=True)
        return len(ids)

    def delete(self, ids: list[str]) -> None:
        from qdrant_client import models

        self.client.delete(self.collection, points_selector=models.PointIdsList(points=[point_id(i) for i in ids]))

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    # -- reading --
    def search(self, vector: np.ndarray, k: int = 5, kind: str | None = None) -> list[dict[str, Any]]:
        """The `k` nearest items (cosine), best first: `{"id", "score", "path", "kind", "text", ...}`.

        `kind` keeps only items of one kind ("text", "image", "audio", ...).
        """
        from qdrant_client import models

        vector = self._check(np.asarray(vector).reshape(1, -1))[0]
        where = None
        if kind is not None:
            where = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value=kind))])
        hits = self.client.query_points(self.collection, query=vector.tolist(), limit=k, query_filter=where).points
        return [{**(hit.payload or {}), "score": float(hit.score)} for hit in hits]


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise VectorIndexError(f"{folder}: not an index folder (no {MANIFEST}); build one with `omnifuse index build`")
    try:
        manifest = json.loads(path.read_text())
        int(manifest["dim"])
    except (ValueError, KeyError, TypeError) as err:
        raise VectorIndexError(f"{path}: corrupt index manifest ({err}); rebuild the index") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise VectorIndexError(f"{path}: index format {manifest.get('format')!r}, this omnifuse reads {FORMAT_VERSION}")
    return manifest
