"""Where video frames become encoder tensors: the image encoder's per-view preprocessing, no tiles."""

from __future__ import annotations

import torch
from PIL import Image

from omnifuse.processing.image import ImageSettings, normalize_views


def frames_to_tensor(frames: list[Image.Image], settings: ImageSettings) -> torch.Tensor:
    """Stack sampled frames as (T, 3, size, size) float32, normalized like a single image view.

    Tiling (``settings.max_tiles``) is ignored: a clip already costs T views.

    Example:
        >>> frames_to_tensor([Image.new("RGB", (8, 6))] * 3, ImageSettings(size=4)).shape
        torch.Size([3, 3, 4, 4])
    """
    if not frames:
        raise ValueError("frames_to_tensor needs at least one frame")
    return normalize_views(list(frames), settings)
