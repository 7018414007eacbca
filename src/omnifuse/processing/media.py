"""Safe media loading: one loader per modality, limits checked before anything large is decoded.

Every failure caused by the input (missing, empty, oversized, corrupt, unsupported) raises
:class:`MediaError`, which names the modality, the item and the reason. http(s) fetching is not
done here: the server fetches behind its own checks and passes bytes or a ``data:`` URI.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import itertools
import math
import numbers
import os
import re
import urllib.parse
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_NUM_FRAMES = 8
# Pillow formats worth accepting; exotic plugins (EPS calls Ghostscript, FITS, PSD, ...) stay closed.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "WEBP", "TIFF", "PPM", "TGA", "ICO", "AVIF")
# FFmpeg demuxers allowed to probe untrusted bytes (no playlists or formats that open other inputs).
CONTAINER_FORMATS = "mov,mp4,m4a,matroska,webm,ogg,wav,w64,flac,mp3,aac,aiff,caf,gif,avi,mpegts,flv,asf"
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]{64,}")


class MediaError(ValueError):
    """Bad media input; says which modality, which item and why.

    Example:
        >>> str(MediaError("image", "message 0, part 2", "truncated or corrupt file: broken PNG"))
        'image (message 0, part 2): truncated or corrupt file: broken PNG'
    """

    def __init__(self, kind: str, item: str = "", reason: str | None = None) -> None:
        if reason is None:
            # Rebuilt from its message alone (torch re-raises DataLoader worker errors as type(message)).
            kind, item, reason = "media", "", kind
            super().__init__(reason)
        else:
            where = f" ({item})" if item else ""
            super().__init__(f"{kind}{where}: {reason}")
        self.kind, self.item, self.reason = kind, item, reason

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # Rebuild from the three fields so the error survives pickling (DataLoader workers).
        return (type(self), (self.kind, self.item, self.reason))


@dataclass(frozen=True)
class MediaLimits:
    """Upper bounds applied to every medium before and while it is decoded.

    Example:
        >>> MediaLimits(max_pixels=1_000_000).max_video_frames
        64
    """

    max_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000
    max_audio_seconds: float = 600.0
    max_video_seconds: float = 600.0
    max_video_frames: int = 64  # frames kept after sampling
    max_decoded_frames: int = 10_000  # frames read while decoding

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"MediaLimits.{name} must be positive, got {value!r}")


# --------------------------------------------------------------------------- bytes


def read_source_bytes(source: Any, *, kind: str, item: str = "", limits: MediaLimits = MediaLimits()) -> bytes:
    """Read a path, ``data:`` URI, bytes or binary file object into bytes, within ``limits.max_bytes``.

    Example:
        >>> read_source_bytes("data:text/plain;base64,aGk=", kind="image")
        b'hi'
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str) and source[:5].lower() == "data:":
        data = _decode_data_uri(source, kind, item, limits)
    elif isinstance(source, str) and (match := _URL_SCHEME.match(source)):
        if match.group(1).lower() in ("http", "https"):
            raise MediaError(kind, item, "remote URLs are not fetched here; pass bytes or a data: URI")
        raise MediaError(kind, item, f"unsupported URL scheme {match.group(1)!r}; pass a path, bytes or a data: URI")
    elif isinstance(source, str | os.PathLike):
        data = _read_file(Path(source), kind, item, limits)
    elif callable(getattr(source, "read", None)):
        data = _read_stream(source, kind, item, limits)
    else:
        raise MediaError(
            kind, item, f"unsupported source type {type(source).__name__}; pass a path, bytes, a file or a data: URI"
        )
    if not data:
        raise MediaError(kind, item, "empty input (0 bytes)")
    if len(data) > limits.max_bytes:
        raise _too_many_bytes(kind, item, len(data), limits)
    return data


def _too_many_bytes(kind: str, item: str, size: int | str, limits: MediaLimits) -> MediaError:
    return MediaError(kind, item, f"input is {size} bytes, over the limit of {limits.max_bytes} (max_bytes)")


def _decode_data_uri(uri: str, kind: str, item: str, limits: MediaLimits) -> bytes:
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise MediaError(kind, item, "malformed data: URI (no ',' before the payload)")
    if not header.lower().endswith(";base64"):
        return urllib.parse.unquote_to_bytes(payload)
    payload = "".join(payload.split())
    # Base64 grows 4:3, so the decoded size is known before decoding.
    if len(payload) // 4 * 3 > limits.max_bytes + 2:
        raise _too_many_bytes(kind, item, f"about {len(payload) // 4 * 3}", limits)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise MediaError(kind, item, f"invalid base64 in data: URI: {error}") from error


def _read_file(path: Path, kind: str, item: str, limits: MediaLimits) -> bytes:
    try:
        stat = path.stat()
        if not path.is_file():
            raise MediaError(kind, item, f"not a regular file: {_shorten(str(path))}")
        if stat.st_size > limits.max_bytes:
            raise _too_many_bytes(kind, item, stat.st_size, limits)
        with path.open("rb") as file:
            return file.read(limits.max_bytes + 1)
    except OSError as error:
        reason = "file not found" if isinstance(error, FileNotFoundError) else f"cannot read file ({error.strerror})"
        hint = ""
        if _BASE64_TEXT.fullmatch(str(path)):
            hint = " (raw base64 is not accepted: wrap it as data:<mime>;base64,<data>)"
        raise MediaError(kind, item, f"{reason}: {_shorten(str(path))}{hint}") from error


def _shorten(text: str, limit: int = 120) -> str:
    # Keep messages readable when a caller passes a whole payload where a path was expected.
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _read_stream(stream: Any, kind: str, item: str, limits: MediaLimits) -> bytes:
    try:
        data = stream.read(limits.max_bytes + 1)
    except OSError as error:
        raise MediaError(kind, item, f"cannot read file object: {error}") from error
    if isinstance(data, str):
        raise MediaError(kind, item, "file object is in text mode; open it with 'rb'")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MediaError(kind, item, f"file object returned {type(data).__name__}, expected bytes")
    return bytes(data)


# --------------------------------------------------------------------------- images


def load_image(source: Any, *, item: str = "", limits: MediaLimits = MediaLimits()) -> Image.Image:
    """Load any image source as an RGB PIL image, with EXIF orientation applied.

    Accepts what :func:`read_source_bytes` takes, a PIL image, a numpy array (HxW, HxWx3/4; uint8,
    uint16 or float in [0, 1]) or a torch tensor (CxHxW when the first axis has 1, 3 or 4 entries,
    else HxWxC).

    Example:
        >>> load_image(np.zeros((4, 6), np.uint8)).size
        (6, 4)
    """
    if isinstance(source, np.ndarray | torch.Tensor):
        return _array_to_image(_to_numpy(source, channels_first=True), "image", item, limits)
    image = source if isinstance(source, Image.Image) else _open_image(source, item, limits)
    check_pixels(image.width, image.height, kind="image", item=item, limits=limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            return image_to_rgb(_exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise MediaError("image", item, f"too many pixels (decompression bomb): {error}") from error
    except Exception as error:
        raise MediaError("image", item, f"truncated or corrupt file: {error}") from error


def check_pixels(width: int, height: int, *, kind: str, item: str = "", limits: MediaLimits = MediaLimits()) -> None:
    """Raise MediaError if a ``width`` x ``height`` picture is empty or over ``limits.max_pixels``.

    Example:
        >>> check_pixels(10, 10, kind="image")
    """
    if width <= 0 or height <= 0:
        raise MediaError(kind, item, f"empty picture ({width}x{height})")
    if width * height > limits.max_pixels:
        raise MediaError(
            kind,
            item,
            f"{width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels} (max_pixels)",
        )


def _open_image(source: Any, item: str, limits: MediaLimits) -> Image.Image:
    data = read_source_bytes(source, kind="image", item=item, limits=limits)
    try:
        # Pillow warns (instead of failing) between 1x and 2x its own bomb limit: fail in both cases.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_available_image_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise MediaError("image", item, f"too many pixels (decompression bomb): {error}") from error
    except UnidentifiedImageError as error:
        accepted = ", ".join(IMAGE_FORMATS)
        raise MediaError("image", item, f"unsupported or unrecognised image format (accepted: {accepted})") from error
    except Exception as error:
        raise MediaError("image", item, f"truncated or corrupt file: {error}") from error


@functools.cache
def _available_image_formats() -> tuple[str, ...]:
    Image.init()  # registers the plugins; Image.open(formats=...) fails on a name that is not registered
    return tuple(name for name in IMAGE_FORMATS if name in Image.OPEN)


def _exif_transpose(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except (KeyError, ValueError, TypeError, SyntaxError):
        # A malformed EXIF block should not cost the picture itself.
        return image


def image_to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: transparency composited on white, 16-bit/int/float rescaled.

    ``I;16`` maps 0..65535 to 0..255; ``I`` does too when its values fit 0..65535 (16-bit PNG/TIFF),
    otherwise it is min-max scaled; ``F`` in [0, 1] is multiplied by 255, in [0, 255] kept, otherwise
    min-max scaled. Scaling, never clipping, keeps the picture's contrast.

    Example:
        >>> image_to_rgb(Image.new("LA", (1, 1), (0, 0))).getpixel((0, 0))
        (255, 255, 255)
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(_deep_to_uint8(np.asarray(image), image.mode)).convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _deep_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    values = np.nan_to_num(values.astype(np.float64))
    low, high = float(values.min()), float(values.max())
    if mode.startswith("I;16") or (mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 65535.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = values
    elif mode == "F" and low >= 0 and high <= 255:
        scaled = values / 255.0
    else:
        scaled = (values - low) / ((high - low) or 1.0)
    return np.round(scaled * 255.0).astype(np.uint8)


def _to_numpy(value: Any, *, channels_first: bool = False) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        tensor = tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor
        # Torch images are CxHxW by convention; HxWxC only when the first axis cannot be channels.
        if channels_first and tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
            tensor = tensor.permute(1, 2, 0)
        return tensor.numpy()
    return np.asarray(value)


def _array_to_image(array: np.ndarray, kind: str, item: str, limits: MediaLimits) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise MediaError(kind, item, f"expected an HxW, HxWx3 or HxWx4 array, got shape {tuple(array.shape)}")
    check_pixels(array.shape[1], array.shape[0], kind=kind, item=item, limits=limits)
    return image_to_rgb(Image.fromarray(np.ascontiguousarray(_pixels_to_uint8(array, kind, item))))


def _pixels_to_uint8(array: np.ndarray, kind: str, item: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise MediaError(kind, item, f"unsupported pixel dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise MediaError(kind, item, "pixel array contains NaN or infinity")
    low, high = float(array.min()), float(array.max())
    if array.dtype.kind == "f":
        if low < 0 or high > 1:
            raise MediaError(kind, item, f"float pixels must lie in [0, 1], got [{low:g}, {high:g}]")
        return np.round(array * 255.0).astype(np.uint8)
    if low < 0 or high > 255:
        raise MediaError(kind, item, f"integer pixels must lie in [0, 255], got [{low:g}, {high:g}]")
    return array.astype(np.uint8)


# --------------------------------------------------------------------------- audio


def load_audio(source: Any, *, sampling_rate: int, item: str = "", limits: MediaLimits = MediaLimits()) -> np.ndarray:
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
    samples = _to_numpy(array)
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
        raise _too_long("audio", item, samples.size / rate, limits.max_audio_seconds, "max_audio_seconds")
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


def _too_long(kind: str, item: str, seconds: float, limit: float, name: str) -> MediaError:
    return MediaError(kind, item, f"{seconds:.1f} s long, over the limit of {limit:g} s ({name})")


def _open_container(data: bytes, kind: str, item: str) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r", options={"format_whitelist": CONTAINER_FORMATS})
    except Exception as error:
        raise MediaError(kind, item, f"unsupported format or corrupt file: {error}") from error


def _known_seconds(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else None


def _decode_audio(data: bytes, sampling_rate: int, item: str, limits: MediaLimits) -> np.ndarray:
    with _open_container(data, "audio", item) as container:
        if not container.streams.audio:
            raise MediaError("audio", item, "no audio stream in the file")
        stream = container.streams.audio[0]
        seconds = _known_seconds(container, stream)
        if seconds is not None and seconds > limits.max_audio_seconds:
            raise _too_long("audio", item, seconds, limits.max_audio_seconds, "max_audio_seconds")
        resampler = av.AudioResampler(format="fltp", rate=sampling_rate)
        chunks: list[np.ndarray] = []
        n_samples = 0
        try:
            for frame in itertools.chain(container.decode(stream), [None]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
                    n_samples += chunks[-1].size
                if n_samples > limits.max_audio_seconds * sampling_rate:
                    raise _too_long(
                        "audio", item, n_samples / sampling_rate, limits.max_audio_seconds, "max_audio_seconds"
                    )
        except MediaError:
            raise
        except Exception as error:
            raise MediaError("audio", item, f"truncated or corrupt file: {error}") from error
    if n_samples == 0:
        raise MediaError("audio", item, "no audio samples decoded (empty or corrupt stream)")
    return np.concatenate(chunks).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- video


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
    limits: MediaLimits = MediaLimits(),
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
    with _open_container(data, "video", item) as container:
        native_fps, total = _probe_video(container, fps is not None, item, limits)
    wanted = _sample_or_fail(total, native_fps, num_frames, fps, item, limits)
    # A fresh container: probing may have demuxed the whole file.
    with _open_container(data, "video", item) as container:
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
        raise _too_long("video", item, len(frames) / native_fps, limits.max_video_seconds, "max_video_seconds")
    wanted = _sample_or_fail(len(frames), native_fps, num_frames, fps, item, limits)
    images = [_frame_to_image(frames[index], item, limits) for index in wanted]
    return images, [index / native_fps for index in wanted]


def _frame_to_image(frame: Any, item: str, limits: MediaLimits) -> Image.Image:
    if isinstance(frame, Image.Image):
        check_pixels(frame.width, frame.height, kind="video", item=item, limits=limits)
        return image_to_rgb(frame)
    if isinstance(frame, np.ndarray | torch.Tensor):
        return _array_to_image(_to_numpy(frame, channels_first=True), "video", item, limits)
    raise MediaError("video", item, f"unsupported frame type {type(frame).__name__}; pass PIL images or arrays")


def _probe_video(
    container: av.container.InputContainer, by_fps: bool, item: str, limits: MediaLimits
) -> tuple[float, int]:
    if not container.streams.video:
        raise MediaError("video", item, "no video stream in the file")
    stream = container.streams.video[0]
    if stream.codec_context.width and stream.codec_context.height:
        check_pixels(stream.codec_context.width, stream.codec_context.height, kind="video", item=item, limits=limits)
    seconds = _known_seconds(container, stream)
    if seconds is not None and seconds > limits.max_video_seconds:
        raise _too_long("video", item, seconds, limits.max_video_seconds, "max_video_seconds")
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
                raise _too_long("video", item, time, limits.max_video_seconds, "max_video_seconds")
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
