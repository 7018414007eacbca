"""image.py: settings, tile-grid choice, crops, and equality with transformers' image processors."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, CLIPImageProcessorPil, SiglipImageProcessorPil
from transformers.image_utils import PILImageResampling

from omnifuse.processing import image as image_module
from omnifuse.processing.image import (
    RESAMPLE,
    ImageSettings,
    choose_tile_grid,
    count_crops,
    image_to_crops,
    normalize_views,
    to_transformers_image_processor,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(image_module).failed == 0


def test_settings_round_trip_and_validation() -> None:
    settings = ImageSettings(size=336, mean=CLIP_MEAN, std=CLIP_STD, max_tiles=6, resample="bilinear")
    data = settings.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["mean"] == list(CLIP_MEAN)
    assert ImageSettings.from_dict(data) == settings
    with pytest.raises(ValueError, match="unknown ImageSettings keys"):
        ImageSettings.from_dict({"size": 8, "crop": 3})
    with pytest.raises(ValueError, match="resample"):
        ImageSettings(size=8, resample="box-ish")
    with pytest.raises(ValueError, match="3 values"):
        ImageSettings(size=8, mean=(0.5, 0.5))


@pytest.mark.parametrize(
    ("width", "height", "max_tiles", "tile_size", "grid"),
    [
        (800, 400, 6, None, (2, 1)),  # ratio 2: (2, 1); (4, 2) would need 8 tiles
        (300, 900, 4, None, (1, 3)),  # ratio 1/3
        (1200, 400, 6, None, (3, 1)),
        (500, 500, 1, None, (1, 1)),
        (1000, 1000, 4, 336, (2, 2)),  # 1x1 and 2x2 tie; 4 * 336^2 <= 2 * 10^6, so 2x2
        (100, 100, 4, 336, (1, 1)),  # too small to fill 2x2 (or even 1x1): smallest tied grid
        (1000, 1000, 4, None, (2, 2)),  # no tile size: more tiles win ties
        # 16:9 is closest to 2:1 (|log 2 - log 16/9| = 0.118 vs 0.170 for 3:2); (4, 2) ties with (2, 1).
        (1920, 1080, 12, 336, (4, 2)),  # 8 * 336^2 = 903168 <= 2 * 2073600
        (1920, 1080, 12, 1000, (2, 1)),  # 8 * 10^6 > 4147200 >= 2 * 10^6
        (1920, 1080, 6, None, (2, 1)),
    ],
)
def test_choose_tile_grid_hand_computed(width: int, height: int, max_tiles: int, tile_size: int | None, grid) -> None:
    assert choose_tile_grid(width, height, max_tiles, tile_size=tile_size) == grid


def test_choose_tile_grid_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        choose_tile_grid(0, 10, 4)
    with pytest.raises(ValueError, match="positive"):
        choose_tile_grid(10, 10, 0)


@pytest.mark.parametrize(
    ("width", "height", "max_tiles", "n_crops"),
    [(64, 32, 0, 1), (64, 32, 1, 1), (64, 32, 2, 3), (32, 32, 4, 5), (24, 64, 6, 4), (16, 16, 4, 1)],
)
def test_count_crops_matches_image_to_crops(width: int, height: int, max_tiles: int, n_crops: int) -> None:
    settings = ImageSettings(size=16, max_tiles=max_tiles)
    crops = image_to_crops(_noise_image(width, height), settings)
    assert count_crops(width, height, settings) == n_crops
    assert crops.shape == (n_crops, 3, 16, 16) and crops.dtype == torch.float32


def test_global_view_equals_transformers_processors() -> None:
    image = _noise_image(50, 30)
    siglip = ImageSettings(size=24)
    clip = ImageSettings(size=24, mean=CLIP_MEAN, std=CLIP_STD)
    reference_siglip = SiglipImageProcessorPil(
        size={"height": 24, "width": 24}, resample=PILImageResampling.BICUBIC, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    reference_clip = CLIPImageProcessorPil(
        size={"height": 24, "width": 24}, do_center_crop=False, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)
    )
    for settings, reference in ((siglip, reference_siglip), (clip, reference_clip)):
        expected = reference(images=image, return_tensors="pt")["pixel_values"][0]
        assert (image_to_crops(image, settings)[0] - expected).abs().max().item() <= 1e-6


def test_resample_setting_is_used() -> None:
    image = _noise_image(50, 30)
    reference = SiglipImageProcessorPil(size={"height": 16, "width": 16}, resample=PILImageResampling.BILINEAR)
    expected = reference(images=image, return_tensors="pt")["pixel_values"][0]
    bilinear = image_to_crops(image, ImageSettings(size=16, mean=(0.5,) * 3, std=(0.5,) * 3, resample="bilinear"))
    bicubic = image_to_crops(image, ImageSettings(size=16))
    assert (bilinear[0] - expected).abs().max().item() <= 1e-6
    assert (bicubic[0] - expected).abs().max().item() > 1e-3


def test_tiles_are_cut_from_the_resized_grid_in_row_major_order() -> None:
    image = _noise_image(40, 70, seed=1)
    settings = ImageSettings(size=16, max_tiles=6)
    cols, rows = choose_tile_grid(40, 70, 6, tile_size=16)
    assert (cols, rows) == (1, 2)  # ratio 0.57: 1:2 (0.56 in log space) beats 1:1 and 2:3
    crops = image_to_crops(image, settings)
    grid = image.resize((16, 32), resample=Image.Resampling.BICUBIC)
    reference = SiglipImageProcessorPil(size={"height": 16, "width": 16})
    for index, box in enumerate([(0, 0, 16, 16), (0, 16, 16, 32)], start=1):
        expected = reference(images=grid.crop(box), return_tensors="pt")["pixel_values"][0]
        assert (crops[index] - expected).abs().max().item() <= 1e-6


def test_tile_order_with_coloured_quadrants() -> None:
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    for box, colour in [((0, 0, 16, 16), (255, 0, 0)), ((16, 0, 32, 16), (0, 255, 0)), ((0, 16, 16, 32), (0, 0, 255))]:
        image.paste(colour, box)
    crops = image_to_crops(image, ImageSettings(size=8, max_tiles=4))
    assert crops.shape == (5, 3, 8, 8)
    # mean = std = 0.5: a channel at 255 normalizes to 1, at 0 to -1.
    expected = [[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1]]
    assert crops[1:, :, 4, 4].round().tolist() == expected


def test_normalization_values_by_hand() -> None:
    red = Image.new("RGB", (10, 6), (255, 0, 0))
    clip = image_to_crops(red, ImageSettings(size=4, mean=CLIP_MEAN, std=CLIP_STD))[0, :, 0, 0]
    expected = [(1 - CLIP_MEAN[0]) / CLIP_STD[0], -CLIP_MEAN[1] / CLIP_STD[1], -CLIP_MEAN[2] / CLIP_STD[2]]
    assert torch.allclose(clip, torch.tensor(expected), atol=1e-6)


def test_non_rgb_input_is_converted() -> None:
    gray = Image.new("L", (8, 8), 255)
    assert image_to_crops(gray, ImageSettings(size=4)).eq(1.0).all()


def test_transformers_processor_saves_and_reloads(tmp_path: Path) -> None:
    settings = ImageSettings(size=20, mean=CLIP_MEAN, std=CLIP_STD)
    processor = to_transformers_image_processor(settings)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["size"] == {"height": 20, "width": 20}
    assert (saved["image_mean"], saved["image_std"], saved["resample"]) == (list(CLIP_MEAN), list(CLIP_STD), 3)
    assert saved["do_resize"] and saved["do_rescale"] and saved["do_normalize"]
    assert not saved.get("do_center_crop", False)
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)
    image = _noise_image(33, 21)
    expected = reloaded(images=image, return_tensors="pt")["pixel_values"][0]
    assert (image_to_crops(image, settings)[0] - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("resample", sorted(RESAMPLE))
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_pixels_are_bit_identical_to_transformers(mode: str, resample: str) -> None:
    # normalize_views tabulates transformers' rescale + normalize; the floats must be the very same.
    image = _noise_image(70, 45).convert(mode)
    settings = ImageSettings(size=20, mean=CLIP_MEAN, std=CLIP_STD, resample=resample)
    expected = to_transformers_image_processor(settings)(images=image, return_tensors="pt")["pixel_values"]
    assert torch.equal(normalize_views([image], settings), expected)
