"""`omnifuse embed`, `classify` and `index build|add|delete|search` on a tiny model; bad input exits 2."""

import json

import numpy as np
import pytest

from omnifuse.cli import main


def run(capsys, *argv) -> tuple[int, dict]:
    code = main([str(a) for a in argv])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else {}


def first_pairs(pairs, n):
    rows = [json.loads(line) for line in pairs.read_text().splitlines()[:n]]
    return [(pairs.parent / r["messages"][0]["content"][0]["path"], r["caption"], r["id"]) for r in rows]


def test_embed_writes_unit_vectors_in_flag_order(model_dir, pairs, tmp_path, capsys):
    (image, caption, _), (audio, _, _) = first_pairs(pairs, 2)
    out = tmp_path / "v.npy"
    code, line = run(capsys, "embed", "--model", model_dir, "--text", caption, "--image", image,
                     "--audio", audio, "--out", out)  # fmt: skip
    assert code == 0 and line == {"task": "embed", "count": 3, "dim": 64, "out": str(out)}
    vectors = np.load(out)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    code, alone = run(capsys, "embed", "--model", model_dir, "--image", image)
    np.testing.assert_allclose(alone["vectors"][0], vectors[1], atol=1e-5)
    code, line = run(capsys, "embed", "--model", model_dir, "--image", tmp_path / "nope.png")
    assert code == 2 and "no such file" in line["error"]
    code, line = run(capsys, "embed", "--model", model_dir)
    assert code == 2 and line["error_type"] == "UsageError"


def test_classify_scores_every_label(model_dir, pairs, capsys):
    (image, _, _), *_ = first_pairs(pairs, 1)
    labels = ["a photo of a red circle", "a photo of a blue square", "a photo of a green triangle"]
    code, line = run(capsys, "classify", "--model", model_dir, "--image", image, "--labels", *labels)
    assert code == 0 and line["label"] in labels
    assert sorted(line["scores"]) == sorted(labels) and abs(sum(line["scores"].values()) - 1) < 1e-3
    code, line = run(capsys, "classify", "--model", model_dir, "--image", image, "--labels", "one")
    assert code == 2 and "at least two" in line["error"]


def test_index_round_trip_persistence_add_delete(model_dir, pairs, tmp_path, capsys):
    index = tmp_path / "idx"
    code, line = run(capsys, "index", "build", "--model", model_dir, "--data", pairs, "--out", index)
    assert code == 0 and line["count"] == 48 and line["items_per_s"] > 0  # 24 media + 24 captions
    image, caption, record_id = first_pairs(pairs, 1)[0]
    # A new process-level open each time: the index persists in its folder.
    code, line = run(capsys, "index", "search", index, "--text", caption, "-k", 3, "--kind", "text")
    assert code == 0 and line["hits"][0]["text"] == caption and line["hits"][0]["score"] == pytest.approx(1, abs=1e-4)
    code, line = run(capsys, "index", "search", index, "--image", image, "-k", 1)
    assert line["hits"][0]["id"] == f"{record_id}/image0" and line["hits"][0]["path"] == str(image)
    code, line = run(capsys, "index", "delete", index, "--ids", f"{record_id}/image0")
    assert code == 0 and line == {"task": "index-delete", "index": str(index), "deleted": 1, "count": 47}
    code, line = run(capsys, "index", "search", index, "--image", image, "-k", 1)
    assert line["hits"][0]["id"] != f"{record_id}/image0"
    code, line = run(capsys, "index", "add", index, "--data", pairs)  # same ids are replaced, not doubled
    assert code == 0 and line["count"] == 48
    code, line = run(capsys, "index", "build", "--model", model_dir, "--data", pairs, "--out", index)
    assert code == 2 and "already holds an index" in line["error"]


def test_corrupt_or_missing_index_is_a_clear_error(model_dir, pairs, tmp_path, capsys):
    index = tmp_path / "idx"
    assert run(capsys, "index", "build", "--model", model_dir, "--data", pairs, "--out", index)[0] == 0
    storage = next(index.glob("qdrant/collection/*/storage.sqlite"))
    storage.write_bytes(b"this is not a database" * 100)
    code, line = run(capsys, "index", "search", index, "--text", "a red circle.")
    assert code == 2 and "cannot be read" in line["error"] and line["error_type"] == "VectorIndexError"
    (index / "index.json").write_text("{not json")
    code, line = run(capsys, "index", "search", index, "--text", "a red circle.")
    assert code == 2 and "corrupt index manifest" in line["error"]
    code, line = run(capsys, "index", "search", tmp_path / "nothing", "--text", "x")
    assert code == 2 and "not an index folder" in line["error"]
