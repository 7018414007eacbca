import json
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from omnifuse.training.checkpoint_check import check_checkpoint, latest_intact_checkpoint
from omnifuse.training.rng_state import CheckpointError, rng_file, save_rng_states


def fake_checkpoint(root, step):
    folder = root / f"step-{step}"
    folder.mkdir(parents=True)
    for name in ("trainer_state.json", "recipe.json", "config.json"):
        (folder / name).write_text(json.dumps({"step": step}))
    save_file({"w": torch.ones(4)}, str(folder / "model.safetensors"))
    torch.save({"state": {}}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    save_rng_states(rng_file(folder, 0))
    (folder / "COMPLETE").write_text("done")
    return folder


def test_an_intact_checkpoint_passes(tmp_path):
    check_checkpoint(fake_checkpoint(tmp_path, 1))
    assert zipfile.is_zipfile(tmp_path / "step-1" / "optimizer.pt")


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "scheduler.pt", "rng-0.safetensors"])
def test_each_truncated_file_is_named(tmp_path, name):
    folder = fake_checkpoint(tmp_path, 1)
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=name):
        check_checkpoint(folder)


def test_latest_intact_skips_damaged_newer_ones_with_a_warning(tmp_path):
    fake_checkpoint(tmp_path, 1)
    newer = fake_checkpoint(tmp_path, 2)
    (newer / "recipe.json").write_text("{cut")
    warnings = []
    assert latest_intact_checkpoint(tmp_path, warnings.append).name == "step-1"
    assert len(warnings) == 1 and "step-2" in warnings[0] and "recipe.json" in warnings[0]


def test_none_intact_is_an_error_and_none_at_all_is_a_fresh_start(tmp_path):
    assert latest_intact_checkpoint(tmp_path / "missing", print) is None
    (fake_checkpoint(tmp_path, 1) / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        latest_intact_checkpoint(tmp_path, lambda text: None)
