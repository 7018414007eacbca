"""Video: frame sampling and load_video (media.py) on encoded clips and frame lists, frames_to_tensor."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import SiglipImageProcessorPil

from omnifuse.processing import video as video_module
from omnifuse.processing.image import ImageSettings
from omnifuse.processing.media import MediaError, MediaLimits, load_video, sample_frame_indices
from omnifuse.processing.media import video as media_module
from omnifuse.processing.video import frames_to_tensor


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(video_module).failed == 0


# --------------------------------------------------------------------------- sample_frame_indices


@pytest.mark.parametrize(
    ("total", "native_fps", "kwargs", "expected"),
    [
        (10, 25.0, {"num_frames": 5}, [1, 3, 5, 7, 9]),  # centres of [0,2), [2,4), ...
        (10, 25.0, {"num_frames": 3}, [1, 5, 8]),  # floor(10/6), floor(30/6), floor(50/6)
        (4, 25.0, {"num_frames": 8}, [0, 1, 2, 3]),  # never more frames than the clip has
        (16, 30.0, {}, [1, 3, 5, 7, 9, 11, 13, 15]),  # default: 8 frames
        (100, 25.0, {"num_frames": 4, "max_frames": 2}, [25, 75]),  # capped before sampling
        (10, 30.0, {"fps": 10.0}, [0, 3, 6, 9]),  # one frame every 3
        (20, 10.0, {"fps": 2.0}, [0, 5, 10, 15]),
        (100, 30.0, {"fps": 0.5}, [0, 60]),
        (5, 10.0, {"fps": 50.0}, [0, 1, 2, 3, 4]),  # faster than the clip: every frame once
        (100, 29.97, {"fps": 1.0}, [0, 29, 59, 89]),  # floor(29.97 k)
        # 100 candidates 0, 3, ..., 297 capped to 4: positions floor((2i+1) * 100 / 8) = 12, 37, 62, 87.
        (300, 30.0, {"fps": 10.0, "max_frames": 4}, [36, 111, 186, 261]),
    ],
)
def test_sample_frame_indices_hand_computed(total: int, native_fps: float, kwargs: dict, expected: list[int]) -> None:
    kwargs = {"max_frames": 64, **kwargs}
    assert sample_frame_indices(total, native_fps, **kwargs) == expected


@pytest.mark.parametrize(
    ("total", "kwargs", "reason"),
    [
        (10, {"num_frames": 2, "fps": 1.0}, "not both"),
        (0, {"num_frames": 2}, "positive"),
        (10, {"num_frames": 0}, "num_frames must be positive"),
        (10, {"fps": -1.0}, "must be positive"),
    ],
)
def test_sample_frame_indices_rejects_bad_arguments(total: int, kwargs: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sample_frame_indices(total, 25.0, max_frames=64, **kwargs)


# --------------------------------------------------------------------------- load_video: encoded clips


@pytest.mark.parametrize(
    ("container_format", "codec", "pix_fmt"),
    [
        ("mp4", "libx264", "yuv420p"),
        ("mp4", "mpeg4", "yuv420p"),
        ("webm", "libvpx-vp9", "yuv420p"),
        ("gif", "gif", "rgb8"),
    ],
)
def test_decoded_clips_give_the_sampled_frames(container_format, codec, pix_fmt, media, write_file) -> None:
    data = media.encode_video(container_format, codec, n_frames=20, fps=10, pix_fmt=pix_fmt)
    path = write_file(f"clip.{container_format}", data)
    frames, times = load_video(path, num_frames=5)
    assert [media.frame_index(frame) for frame in frames] == [2, 6, 10, 14, 18]
    assert times == pytest.approx([0.2, 0.6, 1.0, 1.4, 1.8])
    assert all(frame.mode == "RGB" and frame.size == (32, 32) for frame in frames)
    frames, times = load_video(data, fps=2.0)
    assert [media.frame_index(frame) for frame in frames] == [0, 5, 10, 15]
    assert times == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_default_sampling_and_frame_cap(clip_mp4: bytes, media) -> None:
    frames, _ = load_video(clip_mp4)
    assert [media.frame_index(frame) for frame in frames] == [1, 3, 6, 8, 11, 13, 16, 18]
    frames, _ = load_video(clip_mp4, num_frames=10, limits=MediaLimits(max_video_frames=3))
    assert [media.frame_index(frame) for frame in frames] == [3, 10, 16]
    with pytest.raises(ValueError, match="not both"):
        load_video(clip_mp4, num_frames=2, fps=1.0)


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (MediaLimits(max_video_seconds=1.0), r"2\.0 s long, over the limit of 1 s \(max_video_seconds\)"),
        (MediaLimits(max_decoded_frames=10), r"20 frames, over the limit of 10 \(max_decoded_frames\)"),
        (MediaLimits(max_pixels=1000), r"32x32 = 1024 pixels, over the limit of 1000 \(max_pixels\)"),
        (MediaLimits(max_bytes=100), "over the limit of 100 \\(max_bytes\\)"),
    ],
)
def test_limits_fail_before_decoding(limits: MediaLimits, reason: str, clip_mp4: bytes, monkeypatch) -> None:
    monkeypatch.setattr(media_module, "_decode_frames", lambda *args: pytest.fail("decoding started"))
    with pytest.raises(MediaError, match=reason) as info:
        load_video(clip_mp4, item="message 0, part 3", limits=limits)
    assert (info.value.kind, info.value.item) == ("video", "message 0, part 3")


def test_limits_are_also_enforced_while_decoding(clip_mp4: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # A container that reports neither duration nor frame count must still stop at the limits.
    monkeypatch.setattr(media_module, "known_seconds", lambda container, stream: None)
    with pytest.raises(MediaError, match=r"1\.1 s long, over the limit of 1 s"):
        load_video(clip_mp4, num_frames=20, limits=MediaLimits(max_video_seconds=1.0))
    monkeypatch.setattr(media_module, "_probe_video", lambda *args: (10.0, 5))
    with pytest.raises(MediaError, match=r"4 frames, over the limit of 3"):
        load_video(clip_mp4, num_frames=5, limits=MediaLimits(max_decoded_frames=3))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated", "unsupported format or corrupt file"),
        ("garbage", "unsupported format or corrupt file"),
        ("empty", "empty input"),
        ("audio only", "no video stream"),
    ],
)
def test_corrupt_empty_and_unsupported_video(kind: str, reason: str, clip_mp4: bytes, media, write_file) -> None:
    sources = {
        "truncated": clip_mp4[: len(clip_mp4) // 2],
        "garbage": b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)),
        "empty": b"",
        "audio only": media.encode_tone("wav", "pcm_s16le"),
    }
    with pytest.raises(MediaError, match=reason) as info:
        load_video(write_file("clip.mp4", sources[kind]), item="sample 9")
    assert (info.value.kind, info.value.item) == ("video", "sample 9")


# --------------------------------------------------------------------------- load_video: frames given


def _coloured_frames(media, count: int) -> list[Image.Image]:
    return [Image.new("RGB", (8, 8), media.frame_colour(index)) for index in range(count)]


def test_frame_lists_and_arrays(media) -> None:
    frames = _coloured_frames(media, 10)
    sampled, times = load_video(frames, num_frames=5)  # a bare list counts as 1 fps
    assert [media.frame_index(frame) for frame in sampled] == [1, 3, 5, 7, 9] and times == [1.0, 3.0, 5.0, 7.0, 9.0]
    sampled, times = load_video((frames, 10.0), fps=5.0)
    assert [media.frame_index(frame) for frame in sampled] == [0, 2, 4, 6, 8]
    assert times == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    array = np.stack([np.asarray(frame) for frame in frames])  # T x H x W x 3
    sampled, _ = load_video(array, num_frames=2)
    assert [media.frame_index(frame) for frame in sampled] == [2, 7]
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2)  # T x C x H x W
    sampled, _ = load_video(tensor, num_frames=2)
    assert [media.frame_index(frame) for frame in sampled] == [2, 7] and sampled[0].size == (8, 8)


@pytest.mark.parametrize(
    ("source", "limits", "reason"),
    [
        ([], MediaLimits(), "no frames"),
        ([1, 2, 3], MediaLimits(), "unsupported frame type int"),
        (np.zeros((4, 8, 3), np.uint8), MediaLimits(), "TxHxWxC or TxCxHxW"),
        ([Image.new("RGB", (8, 8))] * 5, MediaLimits(max_decoded_frames=4), r"5 frames, over the limit of 4"),
        ([Image.new("RGB", (8, 8))] * 5, MediaLimits(max_video_seconds=4), r"5\.0 s long, over the limit of 4 s"),
        ([Image.new("RGB", (40, 40))] * 2, MediaLimits(max_pixels=1000), r"40x40 = 1600 pixels"),
    ],
)
def test_bad_frame_lists(source: object, limits: MediaLimits, reason: str) -> None:
    with pytest.raises(MediaError, match=reason):
        load_video(source, limits=limits)


# --------------------------------------------------------------------------- frames_to_tensor


def test_frames_to_tensor_matches_the_per_view_processor(clip_mp4: bytes) -> None:
    frames, _ = load_video(clip_mp4, num_frames=3)
    settings = ImageSettings(size=16, max_tiles=4)  # tiles do not apply to video
    tensor = frames_to_tensor(frames, settings)
    assert tensor.shape == (3, 3, 16, 16) and tensor.dtype == torch.float32
    reference = SiglipImageProcessorPil(size={"height": 16, "width": 16})
    expected = reference(images=frames, return_tensors="pt")["pixel_values"]
    assert (tensor - expected).abs().max().item() <= 1e-6
    with pytest.raises(ValueError, match="at least one frame"):
        frames_to_tensor([], settings)
