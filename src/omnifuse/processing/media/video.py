"""Video decoding and frame sampling: clips and frame lists to uniformly sampled RGB frames."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

from omnifuse.processing.media.containers import known_seconds, open_container
from omnifuse.processing.media.errors import MediaError, MediaLimits, too_long_error
from omnifuse.processing.media.images import array_to_image, check_pixels, image_to_rgb, to_numpy
from omnifuse.processing.media.sources import read_source_bytes

DEFAULT_NUM_FRAMES = 8


def sample_frame_indices(
    total_frames: int,
    native_fps: float,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int,
) -> list[int]:
    """Pick frame indices uniformly, by count (centres of equal segments) or by rate, at most ``max_frames``.

    Count mode takes the middle frame of ``num_frames`` equal segments (all frames if the clip is
    shorter); fps mode takes one frame every ``native_fps / fps`` frames from frame 0 and, above
    ``max_frames``, keeps the segment centres of that list. Neither given means ``num_frames=8``.

    Example:
        >>> sample_frame_indices(10, 25.0, num_frames=5, max_frames=64)
        [1, 3, 5, 7, 9]
        >>> sample_frame_indices(10, 30.0, fps=10.0, max_frames=64)
        [0, 3, 6, 9]
    """
    if total_frames <= 0 or max_frames <= 0:
        raise ValueError(f"total_frames and max_frames must be positive, got {total_frames} and {max_frames}")
    if num_frames is not None and fps is not None:
        raise ValueError("sample by num_frames or by fps, not both")
    if fps is None:
        count = DEFAULT_NUM_FRAMES if num_frames is None else num_frames
        if count <= 0:
            raise ValueError(f"num_frames must be positive, got {count}")
        return _segment_centres(total_frames, min(count, total_frames, max_frames))
    if fps <= 0 or native_fps <= 0:
        raise ValueError(f"fps and the native frame rate must be positive, got {fps} and {native_fps}")
    step = native_fps / fps
    if step <= 1:
        indices = list(range(total_frames))
    else:
        # The epsilon keeps k * step from landing just under an integer (e.g. 29.97 fps).
        candidates = (math.floor(k * step + 1e-9) for k in range(math.ceil(total_frames / step)))
        indices = [index for index in candidates if index < total_frames]
    if len(indices) > max_frames:
        indices = [indices[position] for position in _segment_centres(len(indices), max_frames)]
    return indices


def _segment_centres(total: int, count: int) -> list[int]:
    # floor((i + 0.5) * total / count) in exact integer arithmetic.
    return [(2 * i + 1) * total // (2 * count) for i in range(count)]


def load_video(
    source: Any,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    item: str = "",
    limits: MediaLimits = MediaLimits(),  # noqa: B008
) -> tuple[list[Image.Image], list[float]]:
    """Decode a clip and return uniformly sampled RGB frames with their timestamps in seconds.

    Accepts what :func:`read_source_bytes` takes (mp4, webm, mkv, gif, ...), a list of frames (PIL
    or arrays), a TxHxWx3 array, or ``(frames, native_fps)``; a bare frame list counts as 1 fps.

    Example:
        >>> frames, times = load_video([np.zeros((4, 4, 3), np.uint8)] * 10, num_frames=2)
        >>> len(frames), times
        (2, [2.0, 7.0])
    """
    if num_frames is not None and fps is not None:
        raise ValueError("load_video samples by num_frames or by fps, not both")
    raw = _raw_frames(source, item)
    if raw is not None:
        return _sample_raw_frames(raw[0], raw[1], num_frames, fps, item, limits)
    data = read_source_bytes(source, kind="video", item=item, limits=limits)
    with open_container(data, "video", item) as container:
        native_fps, total = _probe_video(container, fps is not None, item, limits)
    wanted = _sample_or_fail(total, native_fps, num_frames, fps, item, limits)
    # A fresh container: probing may have demuxed the whole file.
    with open_container(data, "video", item) as container:
        return _decode_frames(container, wanted, native_fps, item, limits)


def _raw_frames(source: Any, item: str) -> tuple[Sequence[Any], float] | None:
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], numbers.Real):
        frames, rate = source[0], float(source[1])
    elif isinstance(source, list | np.ndarray | torch.Tensor):
        frames, rate = source, 1.0
    else:
        return None
    if isinstance(frames, np.ndarray | torch.Tensor) and frames.ndim != 4:
        raise MediaError("video", item, f"a frame array must be TxHxWxC or TxCxHxW, got shape {tuple(frames.shape)}")
    if rate <= 0:
        raise MediaError("video", item, f"the frame rate must be positive, got {rate}")
    return list(frames), rate


def _too_many_frames(item: str, count: int, limits: MediaLimits) -> MediaError:
    return MediaError(
        "video", item, f"{count} frames, over the limit of {limits.max_decoded_frames} (max_decoded_frames)"
    )


def _sample_or_fail(
    total: int, native_fps: float, num_frames: int | None, fps: float | None, item: str, limits: MediaLimits
) -> list[int]:
    try:
        return sample_frame_indices(
            total, native_fps, num_frames=num_frames, fps=fps, max_frames=limits.max_video_frames
        )
    except ValueError as error:
        raise MediaError("video", item, str(error)) from error


def _sample_raw_frames(
    frames: Sequence[Any], native_fps: float, num_frames: int | None, fps: float | None, item: str, limits: MediaLimits
) -> tuple[list[Image.Image], list[float]]:
    if len(frames) == 0:
        raise MediaError("video", item, "no frames (empty frame list)")
    if len(frames) > limits.max_decoded_frames:
        raise _too_many_frames(item, len(frames), limits)
    if len(frames) / native_fps > limits.max_video_seconds:
        raise too_long_error("video", item, len(frames) / native_fps, limits.max_video_seconds, "max_video_seconds")
    wanted = _sample_or_fail(len(frames), native_fps, num_frames, fps, item, limits)
    images = [_frame_to_image(frames[index], item, limits) for index in wanted]
    return images, [index / native_fps for index in wanted]


def _frame_to_image(frame: Any, item: str, limits: MediaLimits) -> Image.Image:
    if isinstance(frame, Image.Image):
        check_pixels(frame.width, frame.height, kind="video", item=item, limits=limits)
        return image_to_rgb(frame)
    if isinstance(frame, np.ndarray | torch.Tensor):
        return array_to_image(to_numpy(frame, channels_first=True), "video", item, limits)
    raise MediaError("video", item, f"unsupported frame type {type(frame).__name__}; pass PIL images or arrays")


def _probe_video(
    container: av.container.InputContainer, by_fps: bool, item: str, limits: MediaLimits
) -> tuple[float, int]:
    if not container.streams.video:
        raise MediaError("video", item, "no video stream in the file")
    stream = container.streams.video[0]
    if stream.codec_context.width and stream.codec_context.height:
        check_pixels(stream.codec_context.width, stream.codec_context.height, kind="video", item=item, limits=limits)
    seconds = known_seconds(container, stream)
    if seconds is not None and seconds > limits.max_video_seconds:
        raise too_long_error("video", item, seconds, limits.max_video_seconds, "max_video_seconds")
    total = stream.frames or _count_packets(container, stream, item, limits)
    if total > limits.max_decoded_frames:
        raise _too_many_frames(item, total, limits)
    if total == 0:
        raise MediaError("video", item, "no frames in the video stream")
    native_fps = float(stream.average_rate or stream.guessed_rate or 0) or (total / seconds if seconds else 0.0)
    if by_fps and native_fps <= 0:
        raise MediaError("video", item, "the frame rate is unknown; sample by num_frames instead of fps")
    return native_fps, total


def _count_packets(
    container: av.container.InputContainer, stream: av.stream.Stream, item: str, limits: MediaLimits
) -> int:
    # Demuxing without decoding is cheap; containers like webm do not store a frame count.
    count = 0
    try:
        for packet in container.demux(stream):
            count += packet.size > 0
            if count > limits.max_decoded_frames:
                break
    except Exception as error:
        raise MediaError("video", item, f"truncated or corrupt file: {error}") from error
    return count


def _decode_frames(
    container: av.container.InputContainer, wanted: list[int], native_fps: float, item: str, limits: MediaLimits
) -> tuple[list[Image.Image], list[float]]:
    stream = container.streams.video[0]
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    wanted_set, frames, times = set(wanted), [], []
    try:
        for index, frame in enumerate(container.decode(stream)):
            if index >= limits.max_decoded_frames:
                raise _too_many_frames(item, index + 1, limits)
            time = frame.time - start if frame.time is not None else index / (native_fps or 1.0)
            if time > limits.max_video_seconds:
                raise too_long_error("video", item, time, limits.max_video_seconds, "max_video_seconds")
            if index in wanted_set:
                check_pixels(frame.width, frame.height, kind="video", item=item, limits=limits)
                frames.append(frame.to_image())
                times.append(round(time, 6))
            if index >= wanted[-1]:
                break
    except MediaError:
        raise
    except Exception as error:
        raise MediaError("video", item, f"truncated or corrupt file: {error}") from error
    if not frames:
        raise MediaError("video", item, "no frames could be decoded")
    return frames, times
