"""Where images become encoder tensors: per-view resize/normalize plus dynamic-resolution tiling.

The per-view work (resize, rescale by 1/255, normalize) reproduces transformers' PIL-backend
`SiglipImageProcessor` bit for bit (a lookup table instead of its array round trips, ~1.4x faster;
`omnifuse bench preprocess` checks it), so omnifuse's pixels equal what the encoder's processor would
give; this module adds the tiling around it (a global view plus up to ``max_tiles`` tiles, as in LLaVA's anyres or
Phi-4-multimodal's dynamic HD).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import SiglipImageProcessorPil
from transformers.image_utils import PILImageResampling

from omnifuse.config import dataclass_from_dict
from omnifuse.processing.media import image_to_rgb

RESAMPLE = {
    "nearest": PILImageResampling.NEAREST,
    "bilinear": PILImageResampling.BILINEAR,
    "bicubic": PILImageResampling.BICUBIC,
    "lanczos": PILImageResampling.LANCZOS,
}


@dataclass
class ImageSettings:
    """What one image encoder expects: square input side, normalization, tiling and resampling.

    Example:
        >>> ImageSettings.from_dict(ImageSettings(size=224, max_tiles=4).to_dict()).max_tiles
        4
    """

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    max_tiles: int = 0  # 0 = global view only
    resample: str = "bicubic"

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if self.size <= 0 or self.max_tiles < 0:
            raise ValueError(f"size must be positive and max_tiles >= 0, got {self.size} and {self.max_tiles}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0), got {self.mean} and {self.std}")
        if self.resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {self.resample!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageSettings:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        return dataclass_from_dict(cls, data)


def choose_tile_grid(width: int, height: int, max_tiles: int, *, tile_size: int | None = None) -> tuple[int, int]:
    """Pick the (cols, rows) grid, cols * rows <= max_tiles, whose shape best matches the image.

    Rule: minimise |log(cols / rows) - log(width / height)|. Grids tied on that distance (1x1 and
    2x2 for a square) are broken as InternVL / Phi-4 dynamic HD do: the grid with more tiles wins
    only if the image has enough pixels to fill it, i.e. cols * rows * tile_size**2 <= 2 * width *
    height; if none of the tied grids qualifies, the smallest is taken. Without ``tile_size`` the
    grid with more tiles wins every tie.

    Example:
        >>> choose_tile_grid(800, 400, 6), choose_tile_grid(300, 900, 4)
        ((2, 1), (1, 3))
        >>> choose_tile_grid(1000, 1000, 4, tile_size=336), choose_tile_grid(100, 100, 4, tile_size=336)
        ((2, 2), (1, 1))
    """
    if width <= 0 or height <= 0 or max_tiles <= 0:
        raise ValueError(f"width, height and max_tiles must be positive, got {width}, {height}, {max_tiles}")
    target = math.log(width / height)
    grids = [(cols, rows) for cols in range(1, max_tiles + 1) for rows in range(1, max_tiles // cols + 1)]
    distance = {grid: abs(math.log(grid[0] / grid[1]) - target) for grid in grids}
    best = min(distance.values())
    # Sort by tile count; equal ratios with equal counts cannot occur (same ratio, same area => same grid).
    tied = sorted((grid for grid in grids if distance[grid] - best < 1e-9), key=lambda grid: grid[0] * grid[1])
    if tile_size is None:
        return tied[-1]
    fitting = [grid for grid in tied if grid[0] * grid[1] * tile_size**2 <= 2 * width * height]
    return fitting[-1] if fitting else tied[0]


def tile_grid_for(width: int, height: int, settings: ImageSettings) -> tuple[int, int]:
    """The grid :func:`image_to_crops` cuts for an image of this size ((1, 1) means no tiles).

    Example:
        >>> tile_grid_for(800, 400, ImageSettings(size=224, max_tiles=6))
        (2, 1)
    """
    if settings.max_tiles == 0:
        return (1, 1)
    return choose_tile_grid(width, height, settings.max_tiles, tile_size=settings.size)


def count_crops(width: int, height: int, settings: ImageSettings) -> int:
    """Number of views :func:`image_to_crops` returns: 1 (global) + cols * rows tiles, or just 1.

    Example:
        >>> count_crops(800, 400, ImageSettings(size=224, max_tiles=6))
        3
    """
    cols, rows = tile_grid_for(width, height, settings)
    return 1 if cols * rows == 1 else 1 + cols * rows


def image_to_crops(image: Image.Image, settings: ImageSettings) -> torch.Tensor:
    """Normalized views of one image, shape (n_crops, 3, size, size), float32.

    Crop 0 is the global view (the whole image resized to size x size); if tiling chooses a grid
    other than 1x1, the image is resized to (cols * size, rows * size) and its tiles follow in
    row-major order, so n_crops = 1 + cols * rows (or 1); see :func:`count_crops`.

    Example:
        >>> image_to_crops(Image.new("RGB", (64, 32)), ImageSettings(size=16, max_tiles=2)).shape
        torch.Size([3, 3, 16, 16])
    """
    image = image_to_rgb(image)
    views = [image]
    cols, rows = tile_grid_for(image.width, image.height, settings)
    if cols * rows > 1:
        side = settings.size
        grid = image.resize((cols * side, rows * side), resample=RESAMPLE[settings.resample])
        boxes = [(c * side, r * side, (c + 1) * side, (r + 1) * side) for r in range(rows) for c in range(cols)]
        views += [grid.crop(box) for box in boxes]
    return normalize_views(views, settings)


def normalize_views(views: list[Image.Image], settings: ImageSettings) -> torch.Tensor:
    """Resize each view to size x size, rescale by 1/255 and normalize: exactly `SiglipImageProcessorPil`'s pixels.

    transformers' PIL backend resizes with PIL, then rescales in float64, casts to float32 and
    normalizes in float32. A uint8 channel value has 256 possible results, so they are tabulated once
    per (mean, std) and looked up: the same floats, without the array round trips.

    Example:
        >>> normalize_views([Image.new("RGB", (5, 7), (255, 0, 0))], ImageSettings(size=4))[0, :, 0, 0]
        tensor([ 1., -1., -1.])
    """
    if not views:
        raise ValueError("normalize_views needs at least one image")
    table = _pixel_table(settings.mean, settings.std)
    resample = RESAMPLE[settings.resample]
    side = settings.size
    pixels = np.empty((len(views), 3, side, side), dtype=np.float32)
    for index, view in enumerate(views):
        rgb = np.asarray(image_to_rgb(view).resize((side, side), resample=resample))
        for channel in range(3):
            np.take(table[channel], rgb[..., channel], out=pixels[index, channel])
    return torch.from_numpy(pixels)


@functools.lru_cache(maxsize=32)
def _pixel_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    # (3, 256): what transformers' rescale (float64 x 1/255, then float32) and normalize give per uint8 value.
    scaled = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    return (scaled[None, :] - np.array(mean, np.float32)[:, None]) / np.array(std, np.float32)[:, None]


def to_transformers_image_processor(settings: ImageSettings) -> SiglipImageProcessorPil:
    """A transformers image processor doing exactly the per-view preprocessing (no tiling).

    It is the PIL backend of ``SiglipImageProcessor`` (square resize, no center crop), which needs
    no torchvision; it saves as ``"image_processor_type": "SiglipImageProcessor"``.

    Example:
        >>> to_transformers_image_processor(ImageSettings(size=32)).size["height"]
        32
    """
    return SiglipImageProcessorPil(
        size={"height": settings.size, "width": settings.size},
        resample=RESAMPLE[settings.resample],
        do_resize=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(settings.mean),
        image_std=list(settings.std),
        do_convert_rgb=True,
    )
