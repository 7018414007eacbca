"""The recipe composing the three real parts validates and trains in the order the issue asks for."""

from __future__ import annotations

from pathlib import Path

from omnifuse.training.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "pretrained_smollm2_effnet_whisper.yaml"


def test_recipe_aligns_projectors_then_tunes_lora_on_the_pulled_parts():
    recipe = load_recipe(RECIPE)
    assert [recipe.model.text, recipe.model.image, recipe.model.audio] == [
        "models/smollm2-135m-instruct",
        "models/efficientnet-lite0",
        "models/whisper-tiny.en",
    ]
    align, sft = recipe.stages
    assert (align.name, align.lora, sft.name) == ("align", None, "sft")
    assert sft.lora is not None and set(sft.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert recipe.model.modality_options["image"]["processing"]["mean"] == [0.485, 0.456, 0.406]  # ImageNet's
