"""Class 6: inputs that gave garbage with exit 0 (NaN media through files, prompts past the model's positions,
counts that evaluated nothing or the wrong records)."""

import base64
import io
import struct

import numpy as np
import pytest
from PIL import Image

from omnifuse.modeling.folder import load_omni_folder
from omnifuse.processing.media import MediaError, load_audio, load_image
from omnifuse.safety.limits import InputLimitError

from .conftest import assert_one_line_error, record, run_cli, write_jsonl, write_png


def float_tiff(bad: float) -> bytes:
    pixels = np.full((32, 32), 0.5, np.float32)
    pixels[3, 4] = bad
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


def float_wav(bad: float, rate: int = 16000) -> bytes:
    """A 32-bit IEEE-float WAV (format tag 3) with one bad sample."""
    samples = np.full(rate // 4, 0.1, np.float32)
    samples[100] = bad
    data = samples.tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode()}"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_images_are_refused_on_every_path(tmp_path, bad):
    path = tmp_path / "bad.tiff"
    path.write_bytes(float_tiff(bad))
    direct = np.full((32, 32), 0.5, np.float32)
    direct[3, 4] = bad
    for source in (direct, str(path), data_uri("image/tiff", path.read_bytes())):
        with pytest.raises(MediaError, match="NaN or infinity"):
            load_image(source, item="x")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_audio_is_refused_on_every_path(tmp_path, bad):
    path = tmp_path / "bad.wav"
    path.write_bytes(float_wav(bad))
    direct = np.full(4000, 0.1, np.float32)
    direct[100] = bad
    for source in (direct, str(path), data_uri("audio/wav", path.read_bytes())):
        with pytest.raises(MediaError, match="NaN or infinity"):
            load_audio(source, sampling_rate=16000, item="x")
    assert load_audio(float_wav(0.1), sampling_rate=16000).shape == (4000,)  # finite floats still load


def test_chat_with_a_nan_image_file_exits_2(model_dir, tmp_path, capsys):
    (tmp_path / "nan.tiff").write_bytes(float_tiff(np.nan))
    code, err, summary = run_cli(["chat", "--model", model_dir, "--image", tmp_path / "nan.tiff", "color?"], capsys)
    assert_one_line_error(code, err, summary, "image", "NaN or infinity")


def test_a_prompt_past_the_model_positions_is_refused(model_dir, capsys):
    prompt = "what color is the circle? red blue green " * 3200  # 131 KB, tens of thousands of tokens
    _, processor = load_omni_folder(model_dir)
    with pytest.raises(InputLimitError, match=r"the prompt is \d+ tokens, over the model's 512 positions"):
        processor.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    code, err, summary = run_cli(["chat", "--model", model_dir, prompt], capsys)
    assert_one_line_error(code, err, summary, "over the model's 512 positions")


def test_a_record_with_500_images_is_skipped_and_counted(model_dir, tmp_path, capsys):
    write_png(tmp_path / "red.png")
    image = {"type": "image", "path": "red.png"}
    data = write_jsonl(
        tmp_path / "data.jsonl", [record("color?", "red", [image]), record("color?", "red", [image] * 500)]
    )
    code, err, summary = run_cli(["eval", "--model", model_dir, "--data", data], capsys)
    assert code == 0, err[-2000:]
    assert summary["evaluated"] == 1 and summary["skipped"] == 1
    assert summary["skips"][0].startswith(f"{data}:2: the prompt is 8") and "512 positions" in summary["skips"][0]


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "-1"), ("--limit", "-1"), ("--limit", "0")])
def test_eval_counts_must_be_positive(model_dir, tmp_path, capsys, flag, value):
    data = write_jsonl(tmp_path / "data.jsonl", [record("color?", "red")])
    code, err, summary = run_cli(["eval", "--model", model_dir, "--data", data, flag, value], capsys)
    assert_one_line_error(code, err, summary, flag, f"must be a positive integer, got {value}")


def test_eval_limit_keeps_the_first_n_records(model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "data.jsonl", [record("color?", "red")] * 3)
    code, err, summary = run_cli(["eval", "--model", model_dir, "--data", data, "--limit", "2"], capsys)
    assert code == 0 and summary["evaluated"] == 2 and summary["counts"] == {"all": 2}
