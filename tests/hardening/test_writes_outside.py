"""Class 4: output folders outside anything a run should touch (`output_dir=/` wrote /model.safetensors)."""

from pathlib import Path

import pytest

from omnifuse.errors import OutputPathError
from omnifuse.safety.paths import check_output_dir

from .conftest import assert_one_line_error, run_cli, write_recipe


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/", "filesystem root"),
        ("/tmp", "top-level folder"),
        ("/etc/omnifuse-run", "system folder /etc"),
        ("/usr/local/share/run", "system folder /usr"),
        ("/sys/kernel/run", "system folder /sys"),
        ("/bin", "system folder"),
        ("~", "home folder itself"),
    ],
)
def test_system_locations_are_refused(path, reason):
    with pytest.raises(OutputPathError, match=reason):
        check_output_dir(path, what="output_dir")


def test_symlinks_are_resolved_before_the_check(tmp_path):
    (tmp_path / "sneaky").symlink_to("/etc")
    with pytest.raises(OutputPathError, match="system folder /etc"):
        check_output_dir(tmp_path / "sneaky" / "run", what="output_dir")


def test_train_output_dir_root_writes_nothing(bench, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", bench, Path("/"))
    code, err, summary = run_cli(["train", recipe], capsys)
    assert_one_line_error(code, err, summary, "output_dir /", "filesystem root")
    assert not Path("/checkpoints").exists() and not Path("/model.safetensors").exists()


def test_override_to_a_system_folder_is_refused(bench, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", bench, tmp_path / "fine")
    code, err, summary = run_cli(["train", recipe, "output_dir=/etc/omnifuse"], capsys)
    assert_one_line_error(code, err, summary, "system folder /etc")
    assert not Path("/etc/omnifuse").exists() and not (tmp_path / "fine").exists()


def test_export_to_the_root_is_refused(image_model_dir, capsys):
    code, err, summary = run_cli(["export", "--model", image_model_dir, "--out", "/"], capsys)
    assert_one_line_error(code, err, summary, "--out /", "filesystem root")
    assert not Path("/config.json").exists()
