"""Shared by the training tests: a tiny Llama + SigLIP model recipe section and a 40-record benchmark."""

import copy
from pathlib import Path

import pytest

from omnifuse.benchmark.generate import write_benchmark

TINY_MODEL = {
    "text": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512},
    "image": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
    "tokenizer": {"build": {"vocab_size": 300}},
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model() -> dict:
    """The recipe's `model` section (a fresh copy per test module)."""
    return copy.deepcopy(TINY_MODEL)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """40 image + text records of the built-in benchmark."""
    folder = tmp_path_factory.mktemp("bench")
    write_benchmark(folder, n=40, seed=0, modalities=("image", "text"))
    return folder / "data.jsonl"
