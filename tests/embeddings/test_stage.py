"""The `contrastive` recipe stage through the trainer: heads saved beside the model, resume, recipe checks."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from omnifuse.embeddings.embed import Embedder
from omnifuse.embeddings.heads import HEADS_WEIGHTS
from omnifuse.embeddings.pairs import PairError
from omnifuse.training.recipe import RecipeError, validate_recipe
from omnifuse.training.trainer import train

MODEL = {
    "text": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 256},
    "image": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
    "audio": {"model_type": "whisper", "d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 4,
              "encoder_ffn_dim": 64, "decoder_layers": 1, "decoder_attention_heads": 4, "decoder_ffn_dim": 64,
              "num_mel_bins": 80, "max_source_positions": 50, "vocab_size": 64,
              "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1},
    "tokenizer": {"build": {"vocab_size": 300}},
}  # fmt: skip


def recipe(pairs, out, steps=4, **contrastive):
    stage = {"name": "contrastive", "max_steps": steps, "batch_size": 4, "lr": {"encoders": 1e-3}}
    return {
        "model": MODEL,
        "data": {"train": str(pairs)},
        "stages": [stage | ({"contrastive": contrastive} if contrastive else {})],
        "output_dir": str(out),
        "checkpoints": {"every": 2, "keep": 2},
    }


def test_contrastive_stage_saves_heads_and_resumes_to_the_same_weights(pairs, tmp_path):
    out = tmp_path / "run"
    result = train(validate_recipe(recipe(pairs, out, pooling="attention")))
    assert result["steps"] == 4 and result["final_loss"] > 0
    first = load_file(str(out / HEADS_WEIGHTS))
    embedder = Embedder.from_folder(out)
    assert embedder.heads.config.pooling == "attention" and set(embedder.heads.media) == {"image", "audio"}
    vector = embedder.embed(["a single low tone."])
    assert vector.shape == (1, 64)

    # Interrupted after step 2: drop what came later, train again, land on the same heads.
    shutil.rmtree(out / "checkpoints" / "step-4")
    (out / HEADS_WEIGHTS).unlink()
    resumed = train(validate_recipe(recipe(pairs, out, pooling="attention")))
    assert resumed["steps"] == 4
    second = load_file(str(out / HEADS_WEIGHTS))
    for key, value in first.items():
        torch.testing.assert_close(second[key], value, atol=1e-6, rtol=0)


def test_recipe_checks_for_the_contrastive_block(pairs, tmp_path):
    bad = recipe(pairs, tmp_path)
    bad["stages"][0]["contrastive"] = {"los": "clip"}
    with pytest.raises(RecipeError, match="did you mean 'loss'"):
        validate_recipe(bad)
    wrong = recipe(pairs, tmp_path)
    wrong["stages"][0] |= {"name": "align", "contrastive": {"loss": "clip"}}
    with pytest.raises(RecipeError, match="belong to a stage named contrastive"):
        validate_recipe(wrong)


def test_records_that_are_not_caption_pairs_stop_before_training(tmp_path):
    data = tmp_path / "text.jsonl"
    turn = {"messages": [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "5"}]}
    data.write_text(json.dumps(turn) + "\n")
    with pytest.raises(PairError, match=r"text.jsonl:1: a contrastive record needs a medium"):
        train(validate_recipe(recipe(data, tmp_path / "run")))
