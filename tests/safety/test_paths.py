import pytest

from omnifuse.errors import OutputPathError
from omnifuse.safety.paths import check_output_dir, make_output_dir


def test_new_and_empty_folders_are_fine(tmp_path):
    assert check_output_dir(tmp_path / "new" / "deeper", what="out") == (tmp_path / "new" / "deeper").resolve()
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty", what="out")


def test_a_folder_with_the_runs_own_marker_is_its_own_output(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "model.safetensors").write_bytes(b"x")
    assert check_output_dir(tmp_path / "run", what="out", own_marker="checkpoints")
    (tmp_path / "run" / "checkpoints").rmdir()
    (tmp_path / "run" / "checkpoints").write_text("a file is not the marker")
    with pytest.raises(OutputPathError, match="not this job's own output"):
        check_output_dir(tmp_path / "run", what="out", own_marker="checkpoints")


def test_protected_folders_and_their_parents_are_refused_even_with_overwrite(tmp_path):
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    for target in (base, tmp_path / "models"):
        with pytest.raises(OutputPathError, match="would write over the model it reads"):
            check_output_dir(target, what="out", overwrite=True, protected=[None, "no/such/folder", base])


def test_make_output_dir_creates_the_marker(tmp_path):
    make_output_dir(tmp_path / "a", "out", marker="checkpoints")
    assert (tmp_path / "a" / "checkpoints").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match="cannot create the folder"):
        make_output_dir(tmp_path / "file" / "a", "out")
