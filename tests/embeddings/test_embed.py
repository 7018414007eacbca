"""Embedder: unit vectors, identical batched or alone, every kind through one code path, clear errors."""

import json

import numpy as np
import pytest
import torch

from omnifuse.embeddings.embed import embed
from omnifuse.embeddings.heads import load_heads, save_heads
from omnifuse.errors import OmnifuseInputError

from .conftest import make_embedder


def items_of(pairs_file, n):
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()[:n]]
    parts = []
    for row in rows:
        part = dict(row["messages"][0]["content"][0])
        part["path"] = str(pairs_file.parent / part["path"])
        parts.append(part)
    return parts, [row["caption"] for row in rows]


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_same_vectors_batched_or_alone(tiny_parts, pairs, pooling):
    model, processor = tiny_parts
    embedder = make_embedder(model, processor, pooling=pooling).eval()
    parts, captions = items_of(pairs, 6)
    items = parts + captions  # images, audio clips and texts mixed in one call
    batched = embedder.embed(items, batch_size=32)
    alone = np.concatenate([embedder.embed([item]) for item in items])
    assert batched.shape == (12, 64)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    # Distinct inputs get distinct vectors (no collapse to one vector per modality).
    assert np.abs(batched[0] - batched[2]).max() > 1e-3


def test_functional_embed_and_heads_round_trip(tiny_parts, pairs, tmp_path):
    model, processor = tiny_parts
    embedder = make_embedder(model, processor, loss="clip", dim=16)
    save_heads(embedder.heads, tmp_path)
    heads = load_heads(tmp_path)
    assert heads.config.loss == "clip" and heads.config.dim == 16
    for key, value in embedder.heads.state_dict().items():
        assert torch.equal(value, heads.state_dict()[key])
    parts, captions = items_of(pairs, 2)
    out = embed(model, processor, [captions[0], parts[0]], heads=heads)
    np.testing.assert_allclose(out, embedder.eval().embed([captions[0], parts[0]]), atol=1e-6)


def test_bad_inputs_are_user_errors(tiny_parts, tmp_path):
    model, processor = tiny_parts
    embedder = make_embedder(model, processor).eval()
    with pytest.raises(OmnifuseInputError, match="nothing to embed"):
        embedder.embed([])
    with pytest.raises(OmnifuseInputError, match="no tokens"):
        embedder.embed([""])
    with pytest.raises(OmnifuseInputError, match="no 'depth' modality"):
        embedder.embed([{"type": "depth", "path": "x.png"}])
    with pytest.raises(OmnifuseInputError, match="item 1"):
        embedder.embed(["ok", {"type": "image", "path": str(tmp_path / "missing.png")}])
    with pytest.raises(OmnifuseInputError, match="contrastive"):
        load_heads(tmp_path)
    (tmp_path / "embedding_heads.json").write_text("{}")
    (tmp_path / "embedding_heads.safetensors").write_bytes(b"garbage")
    with pytest.raises(OmnifuseInputError, match="unreadable embedding heads"):
        load_heads(tmp_path)
