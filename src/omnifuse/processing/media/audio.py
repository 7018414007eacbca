"""Audio decoding: encoded files and raw arrays to float32 mono at the wanted sampling rate."""

from __future__ import annotations

import itertools
import numbers
from typing import Any

import av
import numpy as np
import torch

from omnifuse.processing.media.containers import known_seconds, open_container
from omnifuse.processing.media.errors import MediaError, MediaLimits, too_long_error
from omnifuse.processing.media.images import to_numpy
from omnifuse.processing.media.sources import read_source_bytes

MAX_AUDIO_CHANNELS = 64  # more is no audio recording format's layout; refuse rather than allocate


def load_audio(source: Any, *, sampling_rate: int, item: str = "", limits: MediaLimits = MediaLimits()) -> np.ndarray:  # noqa: B008
    """Load audio as float32 mono at ``sampling_rate``.

    Encoded input is decoded and resampled with PyAV (FFmpeg's swresample); a raw array may come
    as ``(array, rate)``, ``{"array": ..., "sampling_rate": ...}`` or bare (already at
    ``sampling_rate``) and is resampled with the same swresample filter. Channels are averaged
    (FFmpeg's own mono downmix scales each stereo channel by 1/sqrt(2) and so changes the level).

    Example:
        >>> load_audio((np.ones((2, 8000), np.float32), 8000), sampling_rate=16000).shape
        (16000,)
    """
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    raw = _raw_audio(source, sampling_rate, item)
    if raw is not None:
        return _raw_audio_to_mono(raw[0], raw[1], sampling_rate, item, limits)
    data = read_source_bytes(source, kind="audio", item=item, limits=limits)
    return _decode_audio(data, sampling_rate, item, limits)


def _raw_audio(source: Any, sampling_rate: int, item: str) -> tuple[Any, float] | None:
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], numbers.Real):
        return source[0], source[1]
    if isinstance(source, dict):
        if "array" not in source:
            raise MediaError("audio", item, "an audio dict needs an 'array' key (and optionally 'sampling_rate')")
        return source["array"], source.get("sampling_rate", sampling_rate)
    if isinstance(source, np.ndarray | torch.Tensor | list):
        return source, sampling_rate
    return None


def _raw_audio_to_mono(array: Any, rate: float, target_rate: int, item: str, limits: MediaLimits) -> np.ndarray:
    samples = to_numpy(array)
    if samples.dtype.kind not in "iuf" or samples.ndim not in (1, 2):
        raise MediaError("audio", item, f"expected a 1-D or 2-D numeric array, got {samples.dtype} {samples.shape}")
    if rate <= 0 or int(rate) != rate:
        raise MediaError("audio", item, f"sampling rate must be a positive integer, got {rate!r}")
    if samples.size == 0:
        raise MediaError("audio", item, "no audio samples (zero-length clip)")
    samples = _pcm_to_float(samples)
    if samples.ndim == 2:
        # The smaller axis holds the channels: (C, T) from torchaudio, (T, C) from soundfile.
        samples = (samples if samples.shape[0] <= samples.shape[1] else samples.T).mean(axis=0)
    if not np.isfinite(samples).all():
        raise MediaError("audio", item, "audio contains NaN or infinity")
    if samples.size / rate > limits.max_audio_seconds:
        raise too_long_error("audio", item, samples.size / rate, limits.max_audio_seconds, "max_audio_seconds")
    if int(rate) == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[None], np.float32), format="fltp", layout="mono")
    frame.sample_rate = int(rate)
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=target_rate)
    return np.concatenate([out.to_ndarray()[0] for out in [*resampler.resample(frame), *resampler.resample(None)]])


def _pcm_to_float(samples: np.ndarray) -> np.ndarray:
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    if samples.dtype.kind == "u":
        half = 2.0 ** (8 * samples.dtype.itemsize - 1)
        return ((samples.astype(np.float64) - half) / half).astype(np.float32)
    return (samples / 2.0 ** (8 * samples.dtype.itemsize - 1)).astype(np.float32)


def _decode_audio(data: bytes, sampling_rate: int, item: str, limits: MediaLimits) -> np.ndarray:
    with open_container(data, "audio", item) as container:
        if not container.streams.audio:
            raise MediaError("audio", item, "no audio stream in the file")
        stream = container.streams.audio[0]
        seconds = known_seconds(container, stream)
        if seconds is not None and seconds > limits.max_audio_seconds:
            raise too_long_error("audio", item, seconds, limits.max_audio_seconds, "max_audio_seconds")
        # Packed "flt", never planar: PyAV's to_ndarray on a planar frame of 8+ channels reads past
        # FFmpeg's 8 data pointers and segfaults; one interleaved plane is downmixed here instead.
        resampler = av.AudioResampler(format="flt", rate=sampling_rate)
        chunks: list[np.ndarray] = []
        n_samples = 0
        try:
            for frame in itertools.chain(container.decode(stream), [None]):
                for out in resampler.resample(frame):
                    chunks.append(_downmix_packed(out, item))
                    n_samples += chunks[-1].size
                if n_samples > limits.max_audio_seconds * sampling_rate:
                    raise too_long_error(
                        "audio", item, n_samples / sampling_rate, limits.max_audio_seconds, "max_audio_seconds"
                    )
        except MediaError:
            raise
        except Exception as error:
            raise MediaError("audio", item, f"truncated or corrupt file: {error}") from error
    if n_samples == 0:
        raise MediaError("audio", item, "no audio samples decoded (empty or corrupt stream)")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    if not np.isfinite(samples).all():  # float WAVs can hold NaN/inf: refused like a raw array would be
        raise MediaError("audio", item, "audio contains NaN or infinity")
    return samples


def _downmix_packed(frame: av.AudioFrame, item: str) -> np.ndarray:
    """Mono samples of a packed (interleaved) frame: the mean over its channels."""
    channels = len(frame.layout.channels)
    if not 0 < channels <= MAX_AUDIO_CHANNELS:
        raise MediaError("audio", item, f"{channels} channels, over the limit of {MAX_AUDIO_CHANNELS}")
    return frame.to_ndarray().reshape(-1, channels).mean(axis=1)
