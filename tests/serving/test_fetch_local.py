"""serving/fetch.py without a network: ``data:`` URIs and local files below the allowed folder."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest

from omnifuse.serving import fetch as fetch_module
from omnifuse.serving.fetch import FetchError, FetchPolicy, decode_data_uri, fetch_media
from omnifuse.serving.local_files import _read_below

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def refused(source: str, policy: FetchPolicy, fragment: str) -> None:
    with pytest.raises(FetchError, match=fragment):
        fetch_media(source, policy)


# --- data: URIs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "DATA:image/png;BASE64," + base64.b64encode(PNG).decode(),
        "data:image/png;name=x.png;base64," + base64.b64encode(PNG).decode(),
        "data:;base64," + base64.b64encode(PNG).decode().rstrip("="),  # unpadded
        "data:image/png;base64,\n" + "\n".join(base64.b64encode(PNG).decode()[i : i + 76] for i in range(0, 280, 76)),
        "data:application/octet-stream," + "".join(f"%{byte:02X}" for byte in PNG),
    ],
)
def test_data_uris_always_work(uri: str) -> None:
    assert fetch_media(uri, FetchPolicy()) == PNG


def test_percent_encoded_data_uris_keep_plain_characters() -> None:
    assert decode_data_uri("data:text/plain,hello%2C%20world", 100) == b"hello, world"


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64,!!!!", "invalid base64"),
        ("data:image/png;base64,aGk=aGk=", "invalid base64"),
        ("data:image/png;base64,", "empty"),
        ("data:,", "empty"),
    ],
)
def test_bad_data_uris(uri: str, fragment: str) -> None:
    refused(uri, FetchPolicy(), fragment)


def test_oversized_data_uris_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("decoded a payload that was already known to be too large")

    monkeypatch.setattr(fetch_module.base64, "b64decode", never)
    monkeypatch.setattr(fetch_module.urllib.parse, "unquote_to_bytes", never)
    policy = FetchPolicy(max_bytes=1000)
    refused("data:image/png;base64," + "A" * 1336, policy, "over the limit of 1000")  # 1002 bytes decoded
    refused("data:image/png;base64," + "A" * 50_000_000, policy, "over the limit of 1000")
    refused("data:image/png," + "A" * 3001, policy, "over the limit of 1000")


def test_data_uri_exactly_at_the_cap() -> None:
    payload = bytes(999)
    uri = "data:;base64," + base64.b64encode(payload).decode()
    assert fetch_media(uri, FetchPolicy(max_bytes=999)) == payload
    refused(uri, FetchPolicy(max_bytes=998), "over the limit")
    refused("data:," + "a" * 11, FetchPolicy(max_bytes=10), "11 bytes, over the limit of 10")


# --- local files ----------------------------------------------------------------------------------------


@pytest.fixture
def media_root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "a.png").write_bytes(PNG)
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    (tmp_path / "media-private").mkdir()
    (tmp_path / "media-private" / "b.png").write_bytes(PNG)
    return root


def test_local_files_are_off_by_default(media_root: Path) -> None:
    for source in (str(media_root / "cats" / "a.png"), f"file://{media_root}/cats/a.png", "cats/a.png"):
        refused(source, FetchPolicy(), "local files are disabled")


@pytest.mark.parametrize("form", ["absolute", "relative", "file-url", "file-localhost", "dotted-inside"])
def test_files_below_the_allowed_folder_are_read(media_root: Path, form: str) -> None:
    source = {
        "absolute": str(media_root / "cats" / "a.png"),
        "relative": "cats/a.png",
        "file-url": f"file://{media_root}/cats/%61.png",
        "file-localhost": f"file://localhost{media_root}/cats/a.png",
        "dotted-inside": f"{media_root}/cats/../cats/./a.png",
    }[form]
    assert fetch_media(source, FetchPolicy(allowed_local_path=str(media_root))) == PNG


@pytest.mark.parametrize(
    "source",
    [
        "../secret.txt",
        "cats/../../secret.txt",
        "{root}/../secret.txt",
        "{root}/../media-private/b.png",  # a sibling folder whose name starts with the root's name
        "file://{root}/..%2Fsecret.txt",
        "/etc/passwd",
        "file:///etc/passwd",
        "{root}",
        ".",
    ],
)
def test_paths_outside_the_folder_are_refused(media_root: Path, source: str) -> None:
    refused(source.format(root=media_root), FetchPolicy(allowed_local_path=str(media_root)), "outside the allowed")


def test_symlinks_are_followed_only_when_they_stay_inside(media_root: Path) -> None:
    (media_root / "inside.png").symlink_to(media_root / "cats" / "a.png")
    (media_root / "leak.txt").symlink_to(media_root.parent / "secret.txt")
    (media_root / "up").symlink_to(media_root.parent)
    policy = FetchPolicy(allowed_local_path=str(media_root))
    assert fetch_media("inside.png", policy) == PNG
    refused("leak.txt", policy, "outside the allowed")
    refused("up/secret.txt", policy, "outside the allowed")


def test_an_allowed_folder_given_through_a_symlink_works(media_root: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(media_root)
    assert fetch_media("cats/a.png", FetchPolicy(allowed_local_path=str(tmp_path / "alias"))) == PNG


def test_a_symlink_swapped_in_after_the_check_is_not_followed(media_root: Path) -> None:
    """The open walks the resolved path with O_NOFOLLOW: a component that became a symlink is refused."""
    (media_root / "swapped").symlink_to(media_root.parent)
    with pytest.raises(FetchError, match="symlink"):
        _read_below(str(media_root), ["swapped", "secret.txt"], 1000, "test")


def test_fifos_folders_and_missing_files_are_refused_without_blocking(media_root: Path) -> None:
    os.mkfifo(media_root / "pipe.png")
    policy = FetchPolicy(allowed_local_path=str(media_root))
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(_error_of("pipe.png", policy)), daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert outcome and "not a regular file" in outcome[0]  # a blocking open would leave outcome empty
    refused("cats", policy, "a folder")
    refused("cats/missing.png", policy, "file not found")
    refused("cats/a.png/x", policy, "not a folder")


def test_local_byte_cap_and_empty_files(media_root: Path) -> None:
    (media_root / "empty.png").write_bytes(b"")
    refused("cats/a.png", FetchPolicy(allowed_local_path=str(media_root), max_bytes=len(PNG) - 1), "over the limit")
    assert fetch_media("cats/a.png", FetchPolicy(allowed_local_path=str(media_root), max_bytes=len(PNG))) == PNG
    refused("empty.png", FetchPolicy(allowed_local_path=str(media_root)), "empty")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("cats/a.png\x00.txt", "NUL"),
        ("file://cats/a.png", "only file:///absolute/path"),
        ("file://evil.test/etc/passwd", "only file:///absolute/path"),
        ("file:///cats/%ff.png", "not valid UTF-8"),
        ("file:///cats/%00.png", "NUL"),
    ],
)
def test_malformed_local_references(media_root: Path, source: str, fragment: str) -> None:
    refused(source, FetchPolicy(allowed_local_path=str(media_root)), fragment)


def test_a_missing_allowed_folder_is_reported(tmp_path: Path) -> None:
    refused("a.png", FetchPolicy(allowed_local_path=str(tmp_path / "nope")), "does not exist")


def test_non_string_references_are_refused() -> None:
    for source in (None, b"data:,x", 42, ""):
        with pytest.raises(FetchError, match="non-empty string"):
            fetch_media(source, FetchPolicy())  # type: ignore[arg-type]


def _error_of(source: str, policy: FetchPolicy) -> str:
    try:
        fetch_media(source, policy)
    except FetchError as error:
        return str(error)
    return "no error"
