"""Class 7: one bad eval record aborted the whole eval with an error that did not say which record."""

import base64
import struct
import zlib

from omnifuse.evaluation.runner import EvalItem, evaluate
from omnifuse.modeling.folder import load_omni_folder

from .conftest import record, run_cli, write_jsonl, write_png


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims `width` x `height` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_bad_records_are_skipped_naming_file_and_line(model_dir, tmp_path, capsys):
    red = write_png(tmp_path / "red.png")
    (tmp_path / "cut.png").write_bytes(red.read_bytes()[: len(red.read_bytes()) // 2])
    bomb = "data:image/png;base64," + base64.b64encode(png_claiming(100_000, 100_000)).decode()
    image = {"type": "image", "path": "red.png"}
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            record("color?", "red", [image]),
            record("color?", "red", [{"type": "image", "url": "https://example.invalid/a.png"}]),
            record("color?", "red", [{"type": "image_url", "image_url": {"url": bomb}}]),
            record("color?", "red", [{"type": "image", "path": "cut.png"}]),
            record("color?", "red", [{"type": "image", "path": 12345}]),
            record("color?", "red", [image]),
        ],
    )
    code, err, summary = run_cli(["eval", "--model", model_dir, "--data", data], capsys)
    assert code == 0, err[-2000:]
    assert summary["evaluated"] == 2 and summary["skipped"] == 4
    lines = [skip.split(": ", 1)[0] for skip in summary["skips"]]
    assert sorted(lines) == [f"{data}:{n}" for n in (2, 3, 4, 5)]
    reasons = " | ".join(summary["skips"])
    for expected in ("remote URLs are not fetched", "too many pixels", "truncated or corrupt", "unsupported source"):
        assert expected in reasons
    assert all(f"skipped {line}:" in err for line in lines)  # also on stderr, as they happen


def test_validation_skips_are_counted_too(model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "data.jsonl", ["{not json", record("color?", "red")])
    code, err, summary = run_cli(["eval", "--model", model_dir, "--data", data], capsys)
    assert code == 0 and summary["skipped"] == 1 and summary["skips"][0].startswith(f"{data}:1: invalid JSON")


def test_when_nothing_can_be_evaluated_the_error_names_the_first_record(model_dir):
    model, processor = load_omni_folder(model_dir)
    item = EvalItem([{"role": "user", "content": [{"type": "image", "path": "/nope.png"}]}], "red", "all", "d.jsonl:7")
    try:
        evaluate(model, processor, [item])
    except ValueError as err:
        assert "d.jsonl:7: image (message 0, part 0): file not found" in str(err)
    else:
        raise AssertionError("expected an error")
