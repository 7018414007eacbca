"""`omnifuse demo`: the built-in benchmark end to end, offline, on CPU.

synthesize the test split -> build a small model (vision + audio encoders, projectors, a small
LM with a grounding head, a byte-level BPE) -> encoder warm-ups -> align stage -> instruction stage on freshly generated
records -> exact-match evaluation per question type -> model, processor, loss curve and gallery
saved -> one JSON line.

Everything goes through the same public pieces a user would call: `write_benchmark`, a training
recipe run by `train`, `evaluate`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import yaml

from omnifuse.benchmark.generate import QUESTION_TYPES, write_benchmark
from omnifuse.demo.recipe import DEFAULT_MINUTES, demo_recipe
from omnifuse.demo.report import save_gallery
from omnifuse.demo.warmup import warm_up_audio_encoder, warm_up_vision_encoder
from omnifuse.evaluation.dataset import eval_items
from omnifuse.evaluation.runner import evaluate, format_table
from omnifuse.modeling.folder import load_omni_folder

DEFAULT_TEST_RECORDS = 700
ALL_MODALITIES = "image,audio,video,mixed,text"
# Encoder-only warm-up steps (README "What mattered"): 600 x 64 scenes reach ~0.95 per-cell accuracy with the row,
# column and centre heads beside colour and shape (300 gave 0.91-0.93),
# 200 x 32 clips ~0.99 per-frame pitch accuracy; about a minute together on 2 cores.
VISION_WARMUP_STEPS = 600
AUDIO_WARMUP_STEPS = 200


def log(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def synthesize_test(out: Path, seed: int, n_test: int, modalities: str) -> Path:
    """The test split as files; training generates its records on demand (the splits' seeds are disjoint,
    see `split_seed`)."""
    folder = out / "data" / "test"
    test = write_benchmark(folder, n=n_test, split="test", seed=seed, modalities=modalities, progress=True)
    log(f"benchmark: {test['records']} test records in {out / 'data' / 'test'}")
    return Path(test["data"])


def accuracy_by_modality(result: dict) -> dict[str, float]:
    """Accuracy over all test records of each modality (image, audio, video, mixed, text)."""
    by_modality: dict[str, list[float]] = {}
    for name, acc in result["per_question"].items():
        count = result["counts"][name]
        by_modality.setdefault(QUESTION_TYPES[name].modality, []).extend([acc] * count)
    return {m: round(sum(v) / len(v), 4) for m, v in by_modality.items()}


def warm_start(
    recipe_dict: dict[str, Any],
    folder: Path,
    seed: int,
    modalities: str,
    steps: tuple[int, int] = (VISION_WARMUP_STEPS, AUDIO_WARMUP_STEPS),
) -> dict[str, Any]:
    """Build the recipe's fresh model, warm up the encoders the benchmark uses (see `demo.warmup`), save it
    to `folder` and point the recipe's model at it. `steps` = (vision, audio) warm-up steps."""
    import torch

    from omnifuse.training.build import build_model, load_datasets
    from omnifuse.training.recipe import validate_recipe

    used = {m.strip() for m in modalities.split(",")}
    vision, audio = bool(used & {"image", "video", "mixed"}), bool(used & {"audio", "mixed"})
    if not (vision or audio):
        return {}  # text only: no encoder is used
    recipe = validate_recipe(recipe_dict, "demo recipe")
    torch.manual_seed(seed)
    model, processor = build_model(recipe.model, load_datasets(recipe.data)[0].corpus())
    stats: dict[str, Any] = {}
    if vision:
        stats["vision"] = warm_up_vision_encoder(model, processor, steps=steps[0], seed=seed)
        log(f"vision encoder warm-up: {stats['vision']}")
    if audio:
        stats["audio"] = warm_up_audio_encoder(model, processor, steps=steps[1], seed=seed)
        log(f"audio encoder warm-up: {stats['audio']}")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    recipe_dict["model"] = {"from_pretrained": str(folder)}
    return stats


def run_demo(
    out_dir: str | Path = "runs/demo",
    minutes: float | None = None,
    seed: int = 0,
    n_test: int = DEFAULT_TEST_RECORDS,
    modalities: str = ALL_MODALITIES,
) -> dict[str, Any]:
    """The main job; returns the figures of the final JSON line. `modalities` narrows the benchmark."""
    from omnifuse.training.recipe import validate_recipe
    from omnifuse.training.trainer import train

    out = Path(out_dir)
    test_file = synthesize_test(out, seed, n_test, modalities)
    recipe_dict = demo_recipe(out / "model", seed, minutes or DEFAULT_MINUTES, modalities)
    started = time.time()
    warm = warm_start(recipe_dict, out / "warm", seed, modalities)
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe_dict, sort_keys=False))
    log(f"recipe written to {out / 'recipe.yaml'} (rerun it with `omnifuse train`)")
    train(validate_recipe(recipe_dict, str(out / "recipe.yaml")))
    train_seconds = round(time.time() - started, 1)

    model, processor = load_omni_folder(out / "model")
    items = eval_items(test_file)
    result = evaluate(model, processor, items)
    chance = {name: qt.chance for name, qt in QUESTION_TYPES.items()}
    print(format_table(result["per_question"], chance), file=sys.stderr)
    gallery = save_gallery(items, result["predictions"], out / "gallery.png")
    log(f"gallery: {gallery}; loss curve: {out / 'model' / 'loss_curve.png'}")
    by_modality = accuracy_by_modality(result)
    return {
        "task": "demo",
        "image_acc": by_modality.get("image"),
        "audio_acc": by_modality.get("audio"),
        "video_acc": by_modality.get("video"),
        "mixed_acc": by_modality.get("mixed"),
        "text_acc": by_modality.get("text"),
        "accuracy": result["accuracy"],
        "per_question": result["per_question"],
        "warmup_cell_accuracy": warm.get("vision", {}).get("cell_accuracy"),
        "warmup_frame_accuracy": warm.get("audio", {}).get("frame_accuracy"),
        "train_seconds": train_seconds,
        "model_dir": str(out / "model"),
    }
