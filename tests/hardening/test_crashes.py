"""Class 2: inputs that killed the whole process (SIGSEGV on 8+ channel audio, SIGABRT on a 50 MB record)."""

import base64
import subprocess
import sys
import wave

import numpy as np
import pytest

from omnifuse.data.sources import validate_dataset
from omnifuse.modeling.folder import load_omni_folder
from omnifuse.processing.media import load_audio
from omnifuse.safety.limits import InputLimitError

from .conftest import record, run_cli, write_jsonl, write_png


def write_wav(path, channels: int, seconds: float = 0.5, rate: int = 16000):
    samples = (np.random.default_rng(0).standard_normal((int(rate * seconds), channels)) * 3000).astype(np.int16)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path, samples


def test_many_channel_wavs_do_not_crash_the_process(tmp_path):
    paths = [str(write_wav(tmp_path / f"c{n}.wav", n)[0]) for n in (8, 12, 32)]
    # In a child process: a regression would segfault, and must fail this test rather than kill pytest.
    loop = f"for p in {paths!r}: print(load_audio(p, sampling_rate=16000).size)"
    code = f"from omnifuse.processing.media import load_audio\n{loop}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.split() == ["8000"] * 3


@pytest.mark.parametrize("channels", [8, 12, 32])
def test_many_channel_wav_decodes_to_the_channel_mean(tmp_path, channels):
    path, samples = write_wav(tmp_path / "many.wav", channels)
    mono = load_audio(path, sampling_rate=16000)
    np.testing.assert_allclose(mono, samples.mean(axis=1) / 32768.0, atol=1e-4)


def test_many_channel_wav_through_chat_and_a_data_uri(model_dir, tmp_path, capsys):
    path, _ = write_wav(tmp_path / "eight.wav", 8)
    code, err, _ = run_cli(["chat", "--model", model_dir, "--audio", path, "--max-new-tokens", "2", "hi"], capsys)
    assert code == 0, err[-2000:]
    uri = "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()
    assert load_audio(uri, sampling_rate=16000).shape == (8000,)


def test_a_50_mb_record_is_skipped_unread_naming_its_line(tmp_path, capsys, model_dir):
    write_png(tmp_path / "red.png")
    good = record("what color is the circle?", "red", [{"type": "image", "path": "red.png"}])
    huge = record("x" * (50 * 2**20), "red")
    data = write_jsonl(tmp_path / "data.jsonl", [good, huge, good])
    records, report = validate_dataset(data)
    assert len(records) == 2 and [s.source for s in report.skipped] == [f"{data}:2"]
    assert "over the limit of 16777216 (OMNIFUSE_MAX_RECORD_BYTES)" in report.skipped[0].reason
    code, err, summary = run_cli(["eval", "--model", model_dir, "--data", data], capsys)
    assert code == 0, err[-2000:]
    assert summary["evaluated"] == 2 and summary["skipped"] == 1 and summary["skips"][0].startswith(f"{data}:2:")


def test_the_record_limit_is_set_by_the_environment(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "data.jsonl", [record("q" * 2000, "a"), record("q", "a")])
    monkeypatch.setenv("OMNIFUSE_MAX_RECORD_BYTES", "1000")
    records, report = validate_dataset(data)
    assert len(records) == 1 and "over the limit of 1000" in report.skipped[0].reason
    monkeypatch.setenv("OMNIFUSE_MAX_RECORD_BYTES", "-5")
    with pytest.raises(Exception, match="OMNIFUSE_MAX_RECORD_BYTES must be a positive number"):
        validate_dataset(data)


def test_a_huge_prompt_is_refused_before_tokenizing(model_dir):
    _, processor = load_omni_folder(model_dir)
    messages = [{"role": "user", "content": "red " * 500_000}]  # 2 M characters
    with pytest.raises(InputLimitError, match="2000000 characters, over the limit of 1000000"):
        processor.apply_chat_template(messages, add_generation_prompt=True)
