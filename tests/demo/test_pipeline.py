"""A shortened `omnifuse demo` (about a minute on 2 cores): the whole pipeline, and it learns."""

import json

import pytest
import yaml

from omnifuse.benchmark.generate import QUESTION_TYPES
from omnifuse.demo.pipeline import run_demo


@pytest.mark.timeout(900)  # about 100 s alone on 2 cores; the default guard is 300 s
def test_short_demo_learns_well_above_chance(tmp_path):
    # audio + text only, so a minute of training covers each question type often enough
    result = run_demo(out_dir=tmp_path, minutes=1.0, seed=0, n_test=200, modalities="audio,text")
    json.dumps(result)  # the final stdout line must be JSON
    assert result["task"] == "demo" and result["train_seconds"] > 0
    types = {"audio_pitch", "audio_beeps", "audio_longer", "audio_louder", "text_arith"}
    assert set(result["per_question"]) == types
    assert result["per_question"]["audio_pitch"] >= QUESTION_TYPES["audio_pitch"].chance + 0.3
    mean_chance = sum(QUESTION_TYPES[t].chance for t in types) / len(types)
    assert result["accuracy"] >= mean_chance + 0.15
    model_dir = tmp_path / "model"
    for name in ("config.json", "model.safetensors", "omnifuse_processor.json", "loss_curve.png"):
        assert (model_dir / name).exists(), name
    assert (tmp_path / "gallery.png").exists()
    recipe = yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    assert [stage["name"] for stage in recipe["stages"]] == ["align", "sft"]
