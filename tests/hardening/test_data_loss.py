"""Class 3: runs and exports that silently replaced another model's files (or their own base model)."""

import shutil

import pytest

from omnifuse.errors import OutputPathError
from omnifuse.safety.paths import check_output_dir

from .conftest import assert_one_line_error, file_digest, run_cli, write_recipe


@pytest.fixture()
def other_model(model_dir, tmp_path):
    """A copy of a saved model folder (no checkpoints/): someone else's model."""
    return shutil.copytree(model_dir, tmp_path / "other_model")


def test_train_into_an_existing_model_folder_is_refused(other_model, bench, tmp_path, capsys):
    before = file_digest(other_model / "model.safetensors")
    recipe = write_recipe(tmp_path / "r.yaml", bench, other_model)
    code, err, summary = run_cli(["train", recipe], capsys)
    assert_one_line_error(code, err, summary, "not empty and is not this job's own output", "overwrite: true")
    assert file_digest(other_model / "model.safetensors") == before
    assert not (other_model / "checkpoints").exists()


def test_train_with_overwrite_may_replace_a_folder_explicitly(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("x")
    with pytest.raises(OutputPathError):
        check_output_dir(tmp_path / "old", what="output_dir", own_marker="checkpoints")
    assert check_output_dir(tmp_path / "old", what="output_dir", own_marker="checkpoints", overwrite=True)


def test_a_lora_run_never_writes_its_base_model(other_model, bench, tmp_path, capsys):
    before = {p.name: file_digest(p) for p in other_model.iterdir() if p.is_file()}
    lora = [{"name": "sft", "max_steps": 1, "batch_size": 4, "lora": {"r": 4}}]
    model = {"from_pretrained": str(other_model)}
    for overwrite in (False, True):  # not even with an explicit overwrite
        recipe = write_recipe(tmp_path / "r.yaml", bench, other_model, model=model, stages=lora, overwrite=overwrite)
        code, err, summary = run_cli(["train", recipe], capsys)
        assert_one_line_error(code, err, summary, "would write over the model it reads")
    after = {p.name: file_digest(p) for p in other_model.iterdir() if p.is_file()}
    assert after == before and not (other_model / "checkpoints").exists()


def test_a_run_may_write_below_its_base_model_folder(other_model):
    assert check_output_dir(other_model / "finetuned", what="output_dir", protected=[other_model])


def test_export_onto_another_model_folder_is_refused(image_model_dir, other_model, capsys):
    before = {p.name: file_digest(p) for p in other_model.iterdir() if p.is_file()}
    args = ["export", "--model", image_model_dir, "--out", other_model]
    code, err, summary = run_cli(args, capsys)
    assert_one_line_error(code, err, summary, "--out", "not empty", "--overwrite")
    assert {p.name: file_digest(p) for p in other_model.iterdir() if p.is_file()} == before


def test_export_with_overwrite_replaces_explicitly(image_model_dir, tmp_path, capsys):
    out = tmp_path / "llava"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    code, err, summary = run_cli(["export", "--model", image_model_dir, "--out", out, "--overwrite"], capsys)
    assert code == 0, err[-2000:]
    assert summary["format"] == "llava" and (out / "config.json").is_file()
