"""Image loading: encoded files, PIL images, arrays and tensors to RGB, within the pixel limit."""

from __future__ import annotations

import functools
import io
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from omnifuse.processing.media.errors import MediaError, MediaLimits
from omnifuse.processing.media.sources import read_source_bytes

# Pillow formats worth accepting; exotic plugins (EPS calls Ghostscript, FITS, PSD, ...) stay closed.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "WEBP", "TIFF", "PPM", "TGA", "ICO", "AVIF")


def load_image(source: Any, *, item: str = "", limits: MediaLimits = MediaLimits()) -> Image.Image:  # noqa: B008
    """Load any image source as an RGB PIL image, with EXIF orientation applied.

    Accepts what :func:`read_source_bytes` takes, a PIL image, a numpy array (HxW, HxWx3/4; uint8,
    uint16 or float in [0, 1]) or a torch tensor (CxHxW when the first axis has 1, 3 or 4 entries,
    else HxWxC).

    Example:
        >>> load_image(np.zeros((4, 6), np.uint8)).size
        (6, 4)
    """
    if isinstance(source, np.ndarray | torch.Tensor):
        return array_to_image(to_numpy(source, channels_first=True), "image", item, limits)
    image = source if isinstance(source, Image.Image) else _open_image(source, item, limits)
    check_pixels(image.width, image.height, kind="image", item=item, limits=limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            return image_to_rgb(_exif_transpose(image))
    except MediaError as error:
        raise MediaError("image", item, error.reason) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise MediaError("image", item, f"too many pixels (decompression bomb): {error}") from error
    except Exception as error:
        raise MediaError("image", item, f"truncated or corrupt file: {error}") from error


def check_pixels(width: int, height: int, *, kind: str, item: str = "", limits: MediaLimits = MediaLimits()) -> None:  # noqa: B008
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
    values = values.astype(np.float64)
    if not np.isfinite(values).all():  # the same refusal as a float array passed directly
        raise MediaError("image", "", "pixel values contain NaN or infinity")
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


def to_numpy(value: Any, *, channels_first: bool = False) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        tensor = tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor
        # Torch images are CxHxW by convention; HxWxC only when the first axis cannot be channels.
        if channels_first and tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
            tensor = tensor.permute(1, 2, 0)
        return tensor.numpy()
    return np.asarray(value)


def array_to_image(array: np.ndarray, kind: str, item: str, limits: MediaLimits) -> Image.Image:
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
