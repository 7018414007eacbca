"""Where audio becomes encoder input: fixed-length windows of log-mel features or raw waveform.

The log-mel recipe is Whisper's (periodic Hann STFT, power spectrum, Slaney mel filters, log10
clamped at 1e-10, floored 8 below the window's maximum, then (x + 4) / 4, last frame dropped), in
torch, and matches ``transformers.WhisperFeatureExtractor`` on the same waveform.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank

from omnifuse.config import dataclass_from_dict

INPUT_KINDS = ("log_mel", "waveform")
WHISPER_MAX_FREQUENCY = 8000.0  # Whisper's filter bank stops at 8 kHz whatever the rate


@dataclass
class AudioSettings:
    """What one audio encoder expects: features or waveform, rate, STFT shape and window length.

    Example:
        >>> settings = AudioSettings("log_mel", window_samples=16000)
        >>> settings.frames_per_window, AudioSettings.from_dict(settings.to_dict()) == settings
        (100, True)
    """

    input_kind: str
    sampling_rate: int = 16000
    n_mels: int = 80
    n_fft: int = 400
    hop_length: int = 160
    window_samples: int = 30 * 16000  # samples per encoder window (Whisper: 30 s)
    normalize_waveform: bool = True

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")
        sizes = (self.sampling_rate, self.n_mels, self.n_fft, self.hop_length, self.window_samples)
        if min(sizes) <= 0:
            raise ValueError(f"rates and sizes must be positive, got {self}")
        if self.input_kind == "log_mel" and self.window_samples <= self.n_fft // 2:
            raise ValueError(f"window_samples ({self.window_samples}) must exceed n_fft // 2 ({self.n_fft // 2})")

    @property
    def frames_per_window(self) -> int:
        """Feature frames per window for log_mel (window_samples // hop_length), samples for waveform."""
        return self.window_samples // self.hop_length if self.input_kind == "log_mel" else self.window_samples

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AudioSettings:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        return dataclass_from_dict(cls, data)


def log_mel_spectrogram(waveform: np.ndarray, settings: AudioSettings) -> torch.Tensor:
    """Whisper log-mel features of one clip, shape (n_mels, len(waveform) // hop_length).

    Example:
        >>> log_mel_spectrogram(np.zeros(1600, np.float32), AudioSettings("log_mel")).shape
        torch.Size([80, 10])
    """
    samples = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    if samples.ndim != 1 or samples.numel() <= settings.n_fft // 2:
        raise ValueError(f"expected a 1-D waveform longer than n_fft // 2 samples, got shape {tuple(samples.shape)}")
    return _log_mel_batch(samples[None], settings)[0]


def _log_mel_batch(windows: torch.Tensor, settings: AudioSettings) -> torch.Tensor:
    # (batch, samples) -> (batch, n_mels, frames); the max floor is per window, as Whisper pads each chunk.
    window = torch.hann_window(settings.n_fft, periodic=True)
    stft = torch.stft(windows, settings.n_fft, settings.hop_length, window=window, return_complex=True)
    power = (stft[..., :-1].abs() ** 2).contiguous()  # Whisper drops the last frame
    mel = _mel_filters(settings.n_fft, settings.n_mels, settings.sampling_rate) @ power
    log_mel = torch.clamp(mel, min=1e-10).log10()
    peak = log_mel.amax(dim=(1, 2), keepdim=True)
    return (torch.maximum(log_mel, peak - 8.0) + 4.0) / 4.0


def _log_mel_windows(windows: torch.Tensor, valid_samples: list[int], settings: AudioSettings) -> torch.Tensor:
    """`_log_mel_batch` of zero-padded windows, transforming only the frames that touch real samples.

    A frame whose STFT span lies wholly in the zero padding has power 0, so its log-mel is the
    floor log10(1e-10) clipped to the window's peak - 8: a constant. A short clip in a 30 s window
    then costs its own length, not 30 s, and the output equals the full transform's.
    """
    frames = settings.frames_per_window
    out = torch.empty(windows.shape[0], settings.n_mels, frames)
    full = [i for i, v in enumerate(valid_samples) if _needed_samples(v, settings) >= windows.shape[1]]
    if full:
        out[full] = _log_mel_batch(windows[full], settings)
    for i, valid in enumerate(valid_samples):
        if i not in full:
            out[i] = _log_mel_prefix(windows[i, : _needed_samples(valid, settings)], frames, settings)
    return out


def _needed_samples(valid: int, settings: AudioSettings) -> int:
    # Real samples, then enough zeros that every frame reaching a real sample sees exactly what it would
    # in the whole window (no end reflection), plus one hop so the first all-zero frame is computed too.
    return valid + settings.n_fft + settings.hop_length


def _log_mel_prefix(prefix: torch.Tensor, frames: int, settings: AudioSettings) -> torch.Tensor:
    half = settings.n_fft // 2
    exact = (prefix.numel() - half) // settings.hop_length + 1  # frames untouched by the end reflection
    window = torch.hann_window(settings.n_fft, periodic=True)
    stft = torch.stft(prefix[None], settings.n_fft, settings.hop_length, window=window, return_complex=True)
    power = (stft[0, :, :exact].abs() ** 2).contiguous()
    log_mel = torch.clamp(_mel_filters(settings.n_fft, settings.n_mels, settings.sampling_rate) @ power, min=1e-10)
    log_mel = log_mel.log10()
    silent = torch.clamp(torch.zeros(()), min=1e-10).log10()  # what an all-zero frame gives
    peak = torch.maximum(log_mel.amax(), silent)
    out = torch.empty(settings.n_mels, frames)
    out[:, :exact] = (torch.maximum(log_mel, peak - 8.0) + 4.0) / 4.0
    out[:, exact:] = (torch.maximum(silent, peak - 8.0) + 4.0) / 4.0
    return out


@functools.lru_cache(maxsize=8)
def _mel_filters(n_fft: int, n_mels: int, sampling_rate: int) -> torch.Tensor:
    filters = mel_filter_bank(
        num_frequency_bins=1 + n_fft // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=min(WHISPER_MAX_FREQUENCY, sampling_rate / 2),
        sampling_rate=sampling_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters.T.astype(np.float32))  # (n_mels, n_freqs)


def count_valid_frames(n_samples: int, settings: AudioSettings) -> list[int]:
    """Valid frames (log_mel) or samples (waveform) in each window of a clip of ``n_samples``.

    A log_mel window with v real samples has ceil(v / hop_length) valid frames, capped at
    frames_per_window; a clip shorter than one window is one window.

    Example:
        >>> count_valid_frames(40000, AudioSettings("log_mel", window_samples=16000))
        [100, 100, 50]
    """
    if n_samples <= 0:
        raise ValueError(f"an audio clip needs at least one sample, got {n_samples}")
    size = settings.window_samples
    valid_samples = [min(size, n_samples - start) for start in range(0, n_samples, size)]
    if settings.input_kind == "waveform":
        return valid_samples
    return [min(math.ceil(valid / settings.hop_length), settings.frames_per_window) for valid in valid_samples]


def audio_to_windows(waveform: np.ndarray, settings: AudioSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a clip into consecutive encoder windows (last one zero-padded) with a validity mask.

    Returns (features, mask): for log_mel, (n_windows, n_mels, frames_per_window) float32 and
    (n_windows, frames_per_window) long; for waveform, (n_windows, window_samples) twice, the
    samples zero-mean/unit-variance over the valid part when ``normalize_waveform``.

    Example:
        >>> settings = AudioSettings("log_mel", window_samples=16000)
        >>> features, mask = audio_to_windows(np.ones(24000, np.float32), settings)
        >>> features.shape, mask.sum(dim=1).tolist()
        (torch.Size([2, 80, 100]), [100, 50])
    """
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected a mono 1-D waveform, got shape {samples.shape}")
    valid = count_valid_frames(samples.size, settings)
    size = settings.window_samples
    padded = np.zeros(len(valid) * size, dtype=np.float32)
    padded[: samples.size] = samples
    windows = torch.from_numpy(padded.reshape(len(valid), size))
    mask = (torch.arange(settings.frames_per_window)[None, :] < torch.tensor(valid)[:, None]).long()
    if settings.input_kind == "log_mel":
        real = [min(size, samples.size - i * size) for i in range(len(valid))]  # real samples per window
        return _log_mel_windows(windows, real, settings), mask
    if settings.normalize_waveform:
        windows = _normalize_valid(windows, mask)
    return windows, mask


def _normalize_valid(windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Statistics over real samples only (as Wav2Vec2's feature extractor); padding stays exactly zero.
    weights = mask.to(windows.dtype)
    count = weights.sum(dim=1, keepdim=True)
    mean = (windows * weights).sum(dim=1, keepdim=True) / count
    variance = (((windows - mean) * weights) ** 2).sum(dim=1, keepdim=True) / count
    return (windows - mean) / torch.sqrt(variance + 1e-7) * weights
