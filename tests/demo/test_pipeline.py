"""A shortened `omnifuse demo` (about a minute on 2 cores): the whole pipeline, and it learns."""

import json

import yaml

from omnifuse.data.synthetic import QUESTION_TYPES
from omnifuse.demo.pipeline import run_demo


def test_short_demo_learns_well_above_chance(tmp_path):
    result = run_demo(out_dir=tmp_path, minutes=0.75, seed=0, n_train=1200, n_test=280)
    json.dumps(result)  # the final stdout line must be JSON
    assert result["task"] == "demo"
    for name in ("image_acc", "audio_acc", "video_acc", "train_seconds", "per_question", "model_dir"):
        assert result[name] is not None
    assert set(result["per_question"]) == set(QUESTION_TYPES)
    # well above chance where a minute of training is enough to learn
    assert result["per_question"]["audio_pitch"] >= QUESTION_TYPES["audio_pitch"].chance + 0.3
    assert result["per_question"]["text_arith"] >= QUESTION_TYPES["text_arith"].chance + 0.3
    assert result["accuracy"] > 0.3
    model_dir = tmp_path / "model"
    for name in ("config.json", "model.safetensors", "omnifuse_processor.json", "loss_curve.png"):
        assert (model_dir / name).exists(), name
    assert (tmp_path / "gallery.png").stat().st_size > 10_000
    recipe = yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    assert [stage["name"] for stage in recipe["stages"]] == ["align", "full"]
