"""Media made on the fly for the processing tests: tones, colour-coded clips and images.

Tests reach the helpers through the ``media`` fixture (importing a conftest module by name is
ambiguous once several test folders have one). Video frame i is painted with ``frame_colour``, so
``frame_index`` reads back which frame a decoder returned, even through lossy codecs (levels are
36 apart; codecs move them by a few).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image


def frame_colour(index: int) -> tuple[int, int, int]:
    """RGB colour that encodes a frame index below 64 in 3-bit red and green levels."""
    return ((index % 8) * 255 // 7, (index // 8) * 255 // 7, 128)


def frame_index(image: Image.Image) -> int:
    """Inverse of :func:`frame_colour` on a decoded (slightly distorted) frame."""
    red, green, _ = np.asarray(image.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
    return int(round(red * 7 / 255)) + 8 * int(round(green * 7 / 255))


def encode_tone(
    container_format: str,
    codec: str,
    *,
    rate: int = 16000,
    channels: list[tuple[float, float]] | None = None,
    seconds: float = 0.5,
) -> bytes:
    """Encode sine channels [(frequency, amplitude), ...] (default one 440 Hz channel at 0.5)."""
    channels = channels or [(440.0, 0.5)]
    n_samples = int(rate * seconds)
    time = np.arange(n_samples) / rate
    signal = np.stack([amp * np.sin(2 * np.pi * freq * time) for freq, amp in channels]).astype(np.float32)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, options={"strict": "experimental"})
        stream.layout = "mono" if len(channels) == 1 else "stereo"
        sample_format = stream.format.name
        step = stream.codec_context.frame_size or 1024
        for start in range(0, n_samples, step):
            chunk = signal[:, start : start + step]
            packed = chunk if sample_format.endswith("p") else chunk.T.reshape(1, -1)
            if sample_format.startswith("s16"):
                packed = np.round(packed * 32767).astype(np.int16)
            elif sample_format.startswith("s32"):
                packed = np.round(packed * (2**31 - 1)).astype(np.int32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(packed), format=sample_format, layout=stream.layout)
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def encode_video(
    container_format: str, codec: str, *, n_frames: int = 20, fps: int = 10, size: int = 32, pix_fmt: str = "yuv420p"
) -> bytes:
    """Encode ``n_frames`` flat frames, frame i painted with :func:`frame_colour`."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = pix_fmt
        for index in range(n_frames):
            pixels = np.tile(np.array(frame_colour(index), np.uint8), (size, size, 1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


class MediaFactory:
    """The helpers above, bundled for the ``media`` fixture."""

    frame_colour = staticmethod(frame_colour)
    frame_index = staticmethod(frame_index)
    encode_tone = staticmethod(encode_tone)
    encode_video = staticmethod(encode_video)


@pytest.fixture(scope="session")
def media() -> type[MediaFactory]:
    """Media-making helpers: ``media.encode_tone(...)``, ``media.frame_index(image)``, ..."""
    return MediaFactory


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """Write bytes to ``tmp_path / name`` and return the path."""

    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write


@pytest.fixture(scope="session")
def clip_mp4() -> bytes:
    """20 colour-coded 32x32 frames at 10 fps, H.264 in mp4 (2 s)."""
    return encode_video("mp4", "libx264")


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    """A 16x8 RGB PNG, left half red and right half blue."""
    image = Image.new("RGB", (16, 8), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 8, 8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
