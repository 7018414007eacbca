"""Measure the contrastive stage on the built-in benchmark: retrieval, zero-shot, index speed.

`python -m omnifuse.embeddings.benchmark --out runs/emb [--steps 600] [--train 6000]` writes caption
pairs (scenes of 1-2 shapes, tone clips), trains a `contrastive` stage (the demo's small ResNet and
Whisper-style encoders, its Llama as the text tower), then reports on held-out data:
- text->image and image->text recall@1/@5 among 1,000 candidates. Captions repeat ("a red circle."),
  so a retrieved item counts when its caption equals the query's (the same scene content);
- zero-shot colour and shape accuracy on single-shape scenes, CLIP-style: each image against the 24
  prompts "a {colour} {shape}.", a colour's score summed over shapes (and the reverse);
- zero-shot audio (pitch and beep-count descriptions) accuracy;
- index build rate and search latency p50/p99 with 100k vectors in the Qdrant local index.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.benchmark.common import COLORS, SHAPES
from omnifuse.demo.recipe import demo_model
from omnifuse.embeddings.pairs import BEEP_WORDS, write_caption_pairs
from omnifuse.embeddings.zero_shot import label_probabilities


def benchmark_recipe(train_file: Path, out: Path, steps: int, seed: int) -> dict[str, Any]:
    model = demo_model()
    for key in ("video", "modality_options"):
        model.pop(key)
    model["projector"] = {"image": {"type": "mlp", "norm": True}, "audio": {"type": "pixel_shuffle", "factor": 2}}
    stage = {
        "name": "contrastive",
        "max_steps": steps,
        "batch_size": 64,
        "warmup_ratio": 0.05,
        "train": ["language_model"],  # the LM is the text tower: trained with the encoders
        "lr": {"encoders": 1e-3, "language_model": 1e-3},
        "contrastive": {"loss": "siglip", "dim": 64, "pooling": "mean", "heads_lr": 2e-3},
    }
    return {
        "model": model,
        "data": {"train": str(train_file), "cache_media": True},
        "stages": [stage],
        "output_dir": str(out),
        "seed": seed,
        "checkpoints": {"every": 1000, "keep": 1},
        "log_every": 10,
    }


def load_pairs(data: Path) -> tuple[list[dict], list[str], list[dict]]:
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    parts = []
    for row in rows:
        part = dict(row["messages"][0]["content"][0])
        part["path"] = str(data.parent / part["path"])
        parts.append(part)
    return parts, [r["caption"] for r in rows], [r["facts"] for r in rows]


def recall(similarity: np.ndarray, query_captions: list[str], candidate_captions: list[str], k: int) -> float:
    """Share of queries whose top-k candidates hold one with the query's caption."""
    top = np.argsort(-similarity, axis=1)[:, :k]
    cands = np.array(candidate_captions)
    return float(np.mean([q in set(cands[row]) for q, row in zip(query_captions, top)]))


def retrieval(embedder, data: Path) -> dict[str, float]:
    parts, captions, _ = load_pairs(data)
    images, texts = embedder.embed(parts, batch_size=100), embedder.embed(captions, batch_size=100)
    sim = texts @ images.T  # (caption queries, image candidates)
    out = {}
    for k in (1, 5):
        out[f"text_to_image_r@{k}"] = round(recall(sim, captions, captions, k), 4)
        out[f"image_to_text_r@{k}"] = round(recall(sim.T, captions, captions, k), 4)
    out["candidates"] = len(parts)
    return out


def zero_shot_scenes(embedder, data: Path) -> dict[str, float]:
    parts, _, facts = load_pairs(data)
    prompts = [(c, s) for c in COLORS for s in SHAPES]
    probs = label_probabilities(
        embedder.embed(parts, batch_size=100),
        embedder.embed([f"a {c} {s}." for c, s in prompts]),
        float(embedder.heads.logit_scale.detach().exp()),
    )
    color_scores = np.stack([probs[:, [i for i, p in enumerate(prompts) if p[0] == c]].sum(1) for c in COLORS], 1)
    shape_scores = np.stack([probs[:, [i for i, p in enumerate(prompts) if p[1] == s]].sum(1) for s in SHAPES], 1)
    truth = [f["shapes"][0] for f in facts]
    color_acc = np.mean([COLORS[j] == t["color"] for j, t in zip(color_scores.argmax(1), truth)])
    shape_acc = np.mean([SHAPES[j] == t["shape"] for j, t in zip(shape_scores.argmax(1), truth)])
    return {"zero_shot_color": round(float(color_acc), 4), "zero_shot_shape": round(float(shape_acc), 4)}


def zero_shot_audio(embedder, data: Path) -> dict[str, float]:
    parts, captions, _ = load_pairs(data)
    labels = [f"a single {p} tone." for p in ("low", "mid", "high")] + list(BEEP_WORDS.values())
    probs = label_probabilities(
        embedder.embed(parts, batch_size=100), embedder.embed(labels), float(embedder.heads.logit_scale.detach().exp())
    )
    return {"zero_shot_audio": round(float(np.mean([labels[j] == c for j, c in zip(probs.argmax(1), captions)])), 4)}


def index_speed(dim: int, n: int, out: Path, queries: int = 200) -> dict[str, float]:
    from omnifuse.embeddings.index import VectorIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.create(out, dim, out, overwrite=True)
    started = time.perf_counter()
    index.add([f"v{i}" for i in range(n)], vectors, [{"kind": "image", "path": f"{i}.png"} for i in range(n)])
    build = time.perf_counter() - started
    latencies = []
    for q in range(queries):
        t = time.perf_counter()
        index.search(vectors[q], k=5)
        latencies.append(time.perf_counter() - t)
    index.close()
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return {
        "index_vectors": n,
        "index_add_per_s": round(n / build, 1),
        "search_p50_ms": round(float(p50), 2),
        "search_p99_ms": round(float(p99), 2),
    }


def pairs_once(folder: Path, n: int, seed: int, split: str, modalities, max_shapes: int = 2) -> dict[str, Any]:
    """Write the pairs unless a previous run wrote the same number already (generation is deterministic)."""
    data = folder / "data.jsonl"
    if data.is_file() and sum(1 for _ in data.open()) == n:
        return {"data": str(data)}
    return write_caption_pairs(folder, n, seed, split, modalities, max_shapes)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/embeddings")
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--index-vectors", type=int, default=100_000)
    args = parser.parse_args(argv)
    from omnifuse.embeddings.embed import Embedder
    from omnifuse.embeddings.indexing import build_index
    from omnifuse.training.recipe import validate_recipe
    from omnifuse.training.trainer import train

    out = Path(args.out)
    data = {
        "train": pairs_once(out / "train", args.train, args.seed, "train", ("image", "image", "audio")),
        "test": pairs_once(out / "test", args.candidates, args.seed, "test", ("image",)),
        "single": pairs_once(out / "single", 400, args.seed, "single", ("image",), max_shapes=1),
        "audio": pairs_once(out / "audio", 300, args.seed, "audio", ("audio",)),
    }
    started = time.perf_counter()
    trained = train(
        validate_recipe(benchmark_recipe(Path(data["train"]["data"]), out / "model", args.steps, args.seed))
    )
    result: dict[str, Any] = {"task": "embeddings-benchmark", "steps": trained["steps"]}
    result["train_seconds"] = round(time.perf_counter() - started, 1)
    embedder = Embedder.from_folder(out / "model")
    result |= retrieval(embedder, Path(data["test"]["data"]))
    result |= zero_shot_scenes(embedder, Path(data["single"]["data"]))
    result |= zero_shot_audio(embedder, Path(data["audio"]["data"]))
    built = build_index(out / "model", data["test"]["data"], out / "index", overwrite=True)
    result["index_build_items_per_s"] = built["items_per_s"]  # embedding included
    result |= index_speed(embedder.heads.config.dim, args.index_vectors, out / "speed-index")
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
