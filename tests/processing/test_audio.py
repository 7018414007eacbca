"""Audio: load_audio (media.py) on encoded and raw input, and the features of audio.py."""

from __future__ import annotations

import doctest
import io
import math
import wave as stdlib_wave

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from omnifuse.processing import audio as audio_module
from omnifuse.processing.audio import AudioSettings, audio_to_windows, count_valid_frames, log_mel_spectrogram
from omnifuse.processing.media import MediaError, MediaLimits, load_audio
from omnifuse.processing.media import audio as media_module

ONE_SECOND = AudioSettings("log_mel", window_samples=16000)


def _peak_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.argmax(spectrum) * rate / wave.size)


def _tone(freq: float, seconds: float, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(audio_module).failed == 0


# --------------------------------------------------------------------------- load_audio: encoded


@pytest.mark.parametrize(
    ("container_format", "codec", "suffix"),
    [
        ("wav", "pcm_s16le", "wav"),
        ("flac", "flac", "flac"),
        ("mp3", "libmp3lame", "mp3"),
        ("ogg", "vorbis", "ogg"),
        ("ipod", "aac", "m4a"),
    ],
)
def test_stereo_44k_files_become_16k_mono_keeping_the_tone(container_format, codec, suffix, media, write_file) -> None:
    data = media.encode_tone(container_format, codec, rate=44100, channels=[(1000.0, 0.5), (1000.0, 0.5)])
    wave = load_audio(write_file(f"tone.{suffix}", data), sampling_rate=16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - 8000) <= 1200  # 0.5 s; lossy codecs add priming/padding samples
    assert abs(_peak_frequency(wave, 16000) - 1000.0) <= 4.0
    assert abs(np.abs(wave[2000:6000]).max() - 0.5) < 0.05  # channel mean keeps the level


def test_channels_are_averaged(media) -> None:
    data = media.encode_tone("wav", "pcm_s16le", rate=16000, channels=[(500.0, 0.4), (500.0, 0.0)])
    wave = load_audio(data, sampling_rate=16000)
    assert wave.size == 8000
    np.testing.assert_allclose(wave, _tone(500.0, 0.5, amp=0.2), atol=2e-4)


def test_duration_limit_checked_from_the_header(media, monkeypatch: pytest.MonkeyPatch) -> None:
    data = media.encode_tone("wav", "pcm_s16le", seconds=0.5)
    monkeypatch.setattr(media_module.av, "AudioResampler", lambda **kw: pytest.fail("decoding started"))
    with pytest.raises(MediaError, match=r"0\.5 s long, over the limit of 0\.25 s \(max_audio_seconds\)"):
        load_audio(data, sampling_rate=16000, item="message 2, part 1", limits=MediaLimits(max_audio_seconds=0.25))


def test_duration_limit_checked_while_decoding(media, monkeypatch: pytest.MonkeyPatch) -> None:
    data = media.encode_tone("wav", "pcm_s16le", seconds=0.5)
    monkeypatch.setattr(media_module, "known_seconds", lambda container, stream: None)  # a header without duration
    with pytest.raises(MediaError, match="over the limit of 0.25 s"):
        load_audio(data, sampling_rate=16000, limits=MediaLimits(max_audio_seconds=0.25))


def _zero_length_wav() -> bytes:
    buffer = io.BytesIO()
    with stdlib_wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16000)
    return buffer.getvalue()  # a valid 44-byte header and no samples


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated", "unsupported format or corrupt file"),
        ("garbage", "unsupported format or corrupt file"),
        ("empty", "empty input"),
        ("silent", "no audio samples decoded"),
        ("video only", "no audio stream"),
    ],
)
def test_corrupt_empty_and_unsupported_audio(kind: str, reason: str, media, write_file) -> None:
    sources = {
        "truncated": lambda: media.encode_tone("wav", "pcm_s16le")[:20],
        "garbage": lambda: bytes(range(256)) * 4,
        "empty": lambda: b"",
        "silent": _zero_length_wav,
        "video only": lambda: media.encode_video("mp4", "mpeg4", n_frames=2),
    }
    with pytest.raises(MediaError, match=reason) as info:
        load_audio(write_file("clip.bin", sources[kind]()), sampling_rate=16000, item="sample 4")
    assert (info.value.kind, info.value.item) == ("audio", "sample 4")


# --------------------------------------------------------------------------- load_audio: raw arrays


def test_bare_array_is_taken_at_the_target_rate() -> None:
    wave = _tone(300.0, 0.25)
    np.testing.assert_array_equal(load_audio(wave, sampling_rate=16000), wave)
    np.testing.assert_array_equal(load_audio(torch.from_numpy(wave), sampling_rate=16000), wave)
    np.testing.assert_allclose(load_audio(wave.tolist(), sampling_rate=16000), wave)


def test_raw_arrays_with_another_rate_are_resampled() -> None:
    wave = _tone(1000.0, 0.5, rate=8000)
    for source in ((wave, 8000), (wave, np.int64(8000)), {"array": wave, "sampling_rate": 8000}):
        resampled = load_audio(source, sampling_rate=16000)
        assert abs(resampled.size - 16000 * 0.5) <= 32
        assert abs(_peak_frequency(resampled, 16000) - 1000.0) <= 4.0


def test_raw_pcm_layouts_and_integer_scaling() -> None:
    left = _tone(500.0, 0.1, amp=0.4)
    stereo = np.stack([left, np.zeros_like(left)])
    np.testing.assert_allclose(load_audio(stereo, sampling_rate=16000), left / 2, atol=1e-7)  # (C, T)
    np.testing.assert_allclose(load_audio(stereo.T, sampling_rate=16000), left / 2, atol=1e-7)  # (T, C)
    pcm16 = np.array([0, 16384, -32768], np.int16)
    np.testing.assert_array_equal(load_audio(pcm16, sampling_rate=16000), [0.0, 0.5, -1.0])


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (np.zeros(0, np.float32), "zero-length"),
        (np.zeros((2, 0), np.float32), "zero-length"),
        (np.full(10, np.nan, np.float32), "NaN"),
        (np.zeros((2, 2, 2), np.float32), "1-D or 2-D"),
        ((np.zeros(10, np.float32), 0), "sampling rate must be a positive integer"),
        ({"sampling_rate": 16000}, "'array' key"),
        (np.zeros(16001, np.float32), "over the limit of 1 s"),
    ],
)
def test_bad_raw_audio(source: object, reason: str) -> None:
    with pytest.raises(MediaError, match=reason):
        load_audio(source, sampling_rate=16000, limits=MediaLimits(max_audio_seconds=1.0))


# --------------------------------------------------------------------------- features


def _whisper_extractor(window_seconds: int = 1) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(
        feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=window_seconds, n_fft=400
    )


def test_log_mel_matches_whisper_feature_extractor() -> None:
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000) + _tone(440.0, 1.0, amp=0.3)).astype(np.float32)
    expected = _whisper_extractor()(wave, sampling_rate=16000, return_tensors="np")["input_features"][0]
    ours = log_mel_spectrogram(wave, ONE_SECOND)
    assert ours.shape == (80, 100) and ours.dtype == torch.float32
    assert np.abs(ours.numpy() - expected).max() <= 1e-4


def test_short_clip_window_matches_whisper_padding_and_mask() -> None:
    wave = _tone(440.0, 0.4375)  # 7000 samples: 43.75 hops -> 44 valid frames
    expected = _whisper_extractor()(wave, sampling_rate=16000, return_tensors="np", return_attention_mask=True)
    features, mask = audio_to_windows(wave, ONE_SECOND)
    assert features.shape == (1, 80, 100) and mask.shape == (1, 100) and mask.dtype == torch.long
    assert np.abs(features[0].numpy() - expected["input_features"][0]).max() <= 1e-4
    assert mask.tolist() == expected["attention_mask"].tolist() and int(mask.sum()) == 44


def _mel_of(freq: float) -> float:
    # Slaney mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above.
    return 3 * freq / 200 if freq < 1000 else 15 + 27 * math.log(freq / 1000) / math.log(6.4)


@pytest.mark.parametrize(("freq", "expected_bin"), [(440.0, 11), (1000.0, 26), (3000.0, 54)])
def test_pure_tone_peaks_in_its_mel_bin(freq: float, expected_bin: int) -> None:
    # 80 filters: 82 mel points evenly spaced from 0 to mel(8000); filter k is centred on point k + 1.
    spacing = _mel_of(8000.0) / 81
    assert round(_mel_of(freq) / spacing) - 1 == expected_bin
    energy = log_mel_spectrogram(_tone(freq, 1.0), ONE_SECOND).mean(dim=1)
    assert int(energy.argmax()) == expected_bin


def test_long_clips_split_into_windows() -> None:
    wave = np.random.default_rng(1).standard_normal(40000).astype(np.float32)
    features, mask = audio_to_windows(wave, ONE_SECOND)
    assert features.shape == (3, 80, 100) and mask.sum(dim=1).tolist() == [100, 100, 50]
    padded = np.zeros(48000, np.float32)
    padded[:40000] = wave
    for index in range(3):
        window = log_mel_spectrogram(padded[index * 16000 : (index + 1) * 16000], ONE_SECOND)
        assert torch.allclose(features[index], window, atol=1e-6)


@pytest.mark.parametrize(
    ("n_samples", "log_mel", "waveform"),
    [
        (1, [1], [1]),
        (159, [1], [159]),
        (160, [1], [160]),
        (161, [2], [161]),
        (16000, [100], [16000]),
        (16001, [100, 1], [16000, 1]),
        (40000, [100, 100, 50], [16000, 16000, 8000]),
    ],
)
def test_count_valid_frames_by_hand(n_samples: int, log_mel: list[int], waveform: list[int]) -> None:
    wave_settings = AudioSettings("waveform", window_samples=16000)
    assert count_valid_frames(n_samples, ONE_SECOND) == log_mel
    assert count_valid_frames(n_samples, wave_settings) == waveform
    for settings in (ONE_SECOND, wave_settings):
        _, mask = audio_to_windows(np.ones(n_samples, np.float32), settings)
        assert mask.sum(dim=1).tolist() == count_valid_frames(n_samples, settings)


def test_waveform_windows_are_normalized_over_the_valid_part() -> None:
    settings = AudioSettings("waveform", window_samples=1000)
    wave = (3.0 + 2.0 * np.random.default_rng(2).standard_normal(1500)).astype(np.float32)
    features, mask = audio_to_windows(wave, settings)
    assert features.shape == (2, 1000) and mask.sum(dim=1).tolist() == [1000, 500]
    last = features[1]
    assert abs(float(last[:500].mean())) < 1e-5 and abs(float(last[:500].std(unbiased=False)) - 1) < 1e-3
    assert last[500:].eq(0).all()
    raw, _ = audio_to_windows(wave, AudioSettings("waveform", window_samples=1000, normalize_waveform=False))
    np.testing.assert_array_equal(raw[1, :500].numpy(), wave[1000:])


def test_audio_settings_round_trip_and_validation() -> None:
    settings = AudioSettings("log_mel", n_mels=128, window_samples=480000)
    assert AudioSettings.from_dict(settings.to_dict()) == settings
    assert settings.frames_per_window == 3000
    with pytest.raises(ValueError, match="input_kind"):
        AudioSettings("mfcc")
    with pytest.raises(ValueError, match="unknown AudioSettings keys"):
        AudioSettings.from_dict({"input_kind": "log_mel", "chunk": 30})
    with pytest.raises(ValueError, match="longer than n_fft // 2"):
        log_mel_spectrogram(np.zeros(100, np.float32), ONE_SECOND)
    with pytest.raises(ValueError, match="at least one sample"):
        count_valid_frames(0, ONE_SECOND)


def test_file_to_features_end_to_end(media) -> None:
    data = media.encode_tone("flac", "flac", rate=44100, channels=[(1000.0, 0.5), (1000.0, 0.5)], seconds=1.0)
    features, mask = audio_to_windows(load_audio(data, sampling_rate=16000), ONE_SECOND)
    assert features.shape == (1, 80, 100) and int(mask.sum()) == 100
    assert int(features[0].mean(dim=1).argmax()) == 26  # the 1 kHz bin worked out above


@pytest.mark.parametrize("n_samples", [1, 200, 399, 401, 5000, 15000, 15439, 15440, 15600, 15999, 16000, 16001, 40000])
def test_short_windows_skip_the_silent_frames_with_the_same_features(n_samples: int) -> None:
    # Only frames touching real samples are transformed; the all-padding frames get their constant.
    wave = (0.1 * np.random.default_rng(n_samples).standard_normal(n_samples)).astype(np.float32)
    features, _ = audio_to_windows(wave, ONE_SECOND)
    padded = np.zeros(features.shape[0] * 16000, np.float32)
    padded[:n_samples] = wave
    full = audio_module._log_mel_batch(torch.from_numpy(padded.reshape(-1, 16000)), ONE_SECOND)
    assert (features - full).abs().max().item() <= 1e-6
