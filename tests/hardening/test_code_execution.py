"""Class 1: nothing omnifuse reads may unpickle arbitrary objects (a planted checkpoint file must not run)."""

import re
from pathlib import Path

import pytest
import torch

from omnifuse.training import checkpoint as ckpt

from .conftest import assert_one_line_error, resume_copy, run_cli

SRC = Path(__file__).resolve().parents[2] / "src" / "omnifuse"


class MarkerPayload:
    """Unpickling this object opens (creates) the marker file: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_payload_is_live_when_unpickled(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"python": MarkerPayload(marker)}, tmp_path / "rng-0.pt")
    torch.load(tmp_path / "rng-0.pt", weights_only=False)
    assert marker.exists()  # so its absence below means "never unpickled", not "harmless payload"


def test_checkpoints_hold_no_pickled_random_state(finished_run):
    latest = ckpt.latest_checkpoint(finished_run / "checkpoints")
    assert (latest / "rng-0.safetensors").is_file() and not list(latest.glob("rng-*.pt"))


def test_a_planted_rng_pickle_is_never_loaded(finished_run, bench, tmp_path, capsys):
    recipe, latest = resume_copy(finished_run, bench, tmp_path)
    marker = tmp_path / "ran"
    torch.save({"python": MarkerPayload(marker)}, latest / "rng-0.pt")
    (latest / "rng-0.safetensors").unlink()  # as an older omnifuse (or an attacker) would leave it
    code, err, summary = run_cli(["train", recipe], capsys)
    assert code == 0, err[-2000:]
    assert not marker.exists()
    assert "rng-0.pt not loaded (pickle files can run code)" in err


@pytest.mark.parametrize("name", ["scheduler.pt", "optimizer.pt"])
def test_a_planted_training_state_pickle_is_refused(finished_run, bench, tmp_path, capsys, name):
    recipe, latest = resume_copy(finished_run, bench, tmp_path)
    marker = tmp_path / "ran"
    torch.save(MarkerPayload(marker), latest / name)
    code, err, summary = run_cli(["train", recipe], capsys)
    assert_one_line_error(code, err, summary, name, "refused to load")
    assert not marker.exists()


def test_a_tampered_rng_file_is_refused(finished_run, bench, tmp_path, capsys):
    recipe, latest = resume_copy(finished_run, bench, tmp_path)
    from safetensors.torch import save_file

    save_file({"torch": torch.zeros(3, dtype=torch.uint8)}, str(latest / "rng-0.safetensors"))  # no metadata
    code, err, summary = run_cli(["train", recipe], capsys)
    assert_one_line_error(code, err, summary, "rng-0.safetensors", "not a readable random-state file")


def test_no_source_file_unpickles_or_loads_unsafe_yaml():
    unsafe = re.compile(
        r"weights_only\s*=\s*False|pickle\.loads?\(|yaml\.(unsafe_)?load\((?![^)]*SafeLoader)|"
        r"torch\.load\((?![^)]*weights_only=True)|numpy\.load\([^)]*allow_pickle=True"
    )
    found = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if unsafe.search(line)
    ]
    assert found == []
