import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from omnifuse.training.rng_state import CheckpointError, restore_rng_states, rng_file, save_rng_states


def draws():
    return random.random(), random.gauss(0, 1), np.random.rand(), np.random.randn(), torch.rand(2).tolist()


def test_states_round_trip_through_safetensors(tmp_path):
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.randn()
    path = rng_file(tmp_path, 3)
    save_rng_states(path)
    expected = draws()
    assert path.name == "rng-3.safetensors"
    assert restore_rng_states(path)
    assert draws() == expected


def test_missing_file_means_reseed(tmp_path):
    assert restore_rng_states(tmp_path / "rng-0.safetensors") is False


@pytest.mark.parametrize("content", [b"not safetensors", None])
def test_damaged_or_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "rng-0.safetensors"
    if content is None:
        save_file({"torch": torch.zeros(4, dtype=torch.uint8)}, str(path), metadata={"python": "[3, [1], null]"})
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable random-state file"):
        restore_rng_states(path)
