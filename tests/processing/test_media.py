"""media.py: MediaError, MediaLimits, read_source_bytes and load_image (audio and video loading are
tested in test_audio.py and test_video.py next to their features)."""

from __future__ import annotations

import base64
import doctest
import io
import pickle
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from omnifuse.processing import media
from omnifuse.processing.media import MediaError, MediaLimits, load_image, read_source_bytes

WHITE = (255, 255, 255)


@pytest.mark.parametrize("module", ["errors", "sources", "images", "containers", "audio", "video"])
def test_docstring_examples_hold(module: str) -> None:
    assert doctest.testmod(getattr(media, module)).failed == 0


# --------------------------------------------------------------------------- MediaError / MediaLimits


def test_media_error_names_kind_item_and_reason() -> None:
    error = MediaError("image", "message 0, part 2", "truncated or corrupt file: broken PNG")
    assert isinstance(error, ValueError)
    assert (error.kind, error.item, error.reason) == (
        "image",
        "message 0, part 2",
        "truncated or corrupt file: broken PNG",
    )
    assert str(error) == "image (message 0, part 2): truncated or corrupt file: broken PNG"
    assert str(MediaError("audio", "", "empty input")) == "audio: empty input"


def test_media_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(MediaError("video", "sample 3", "too long")))
    assert (error.kind, error.item, error.reason, str(error)) == (
        "video",
        "sample 3",
        "too long",
        "video (sample 3): too long",
    )


def test_media_limits_defaults_and_validation() -> None:
    limits = MediaLimits()
    assert (limits.max_bytes, limits.max_pixels, limits.max_video_frames, limits.max_decoded_frames) == (
        64 * 2**20,
        40_000_000,
        64,
        10_000,
    )
    assert (limits.max_audio_seconds, limits.max_video_seconds) == (600.0, 600.0)
    with pytest.raises(ValueError, match="max_pixels"):
        MediaLimits(max_pixels=0)


# --------------------------------------------------------------------------- read_source_bytes


def test_reads_every_source_form(write_file) -> None:
    path = write_file("blob.bin", b"abc")
    encoded = base64.b64encode(b"abc").decode()
    sources = [path, str(path), b"abc", bytearray(b"abc"), io.BytesIO(b"abc"), f"data:image/png;base64,{encoded}"]
    assert [read_source_bytes(source, kind="image") for source in sources] == [b"abc"] * len(sources)
    assert read_source_bytes("data:text/plain,a%20b", kind="image") == b"a b"
    with path.open("rb") as file:
        assert read_source_bytes(file, kind="image") == b"abc"


@pytest.mark.parametrize("url", ["http://example.com/a.png", "HTTPS://example.com/a.png"])
def test_rejects_remote_urls(url: str) -> None:
    with pytest.raises(MediaError, match="remote URLs are not fetched here; pass bytes or a data: URI") as info:
        read_source_bytes(url, kind="image", item="message 1, part 0")
    assert str(info.value).startswith("image (message 1, part 0): ")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("ftp://host/a.png", "unsupported URL scheme 'ftp'"),
        (b"", "empty input"),
        (io.BytesIO(b""), "empty input"),
        (io.StringIO("text"), "text mode"),
        (12, "unsupported source type int"),
        ("data:image/png;base64,@@@@", "invalid base64"),
        ("data:image/png;base64", "malformed data: URI"),
        ("aGVsbG8=", "file not found"),  # bare base64 is not accepted: it reads as a (missing) path
    ],
)
def test_bad_sources_raise_media_error(source: object, reason: str) -> None:
    with pytest.raises(MediaError, match=reason) as info:
        read_source_bytes(source, kind="audio", item="x")
    assert info.value.kind == "audio" and info.value.item == "x"


def test_raw_base64_is_refused_with_a_hint() -> None:
    payload = base64.b64encode(bytes(range(256)) * 40).decode()  # 13,656 characters
    with pytest.raises(MediaError, match=r"raw base64 is not accepted: wrap it as data:<mime>;base64,<data>") as info:
        read_source_bytes(payload, kind="image")
    assert len(str(info.value)) < 300  # the payload is not echoed back


def test_missing_empty_and_directory_paths(tmp_path: Path, write_file) -> None:
    with pytest.raises(MediaError, match=f"file not found: {tmp_path / 'nope.png'}"):
        read_source_bytes(tmp_path / "nope.png", kind="image")
    with pytest.raises(MediaError, match="empty input"):
        read_source_bytes(write_file("empty.png", b""), kind="image")
    with pytest.raises(MediaError, match="not a regular file"):
        read_source_bytes(tmp_path, kind="image")


def test_file_size_is_checked_before_reading(write_file, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_file("big.bin", b"x" * 2048)
    monkeypatch.setattr(Path, "open", lambda *args, **kwargs: pytest.fail("the file was opened"))
    with pytest.raises(MediaError, match="input is 2048 bytes, over the limit of 1024"):
        read_source_bytes(path, kind="image", limits=MediaLimits(max_bytes=1024))


def test_file_objects_are_read_at_most_one_byte_past_the_limit() -> None:
    class CountingStream(io.BytesIO):
        requested: list[int] = []

        def read(self, size: int | None = -1) -> bytes:
            self.requested.append(size)
            return super().read(size)

    stream = CountingStream(b"x" * 5000)
    with pytest.raises(MediaError, match="input is 1025 bytes, over the limit of 1024"):
        read_source_bytes(stream, kind="video", limits=MediaLimits(max_bytes=1024))
    assert stream.requested == [1025]


def test_oversized_data_uri_fails_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base64, "b64decode", lambda *args, **kwargs: pytest.fail("decoded"))
    uri = "data:audio/wav;base64," + "A" * 4000
    with pytest.raises(MediaError, match="about 3000 bytes, over the limit of 1024"):
        read_source_bytes(uri, kind="audio", limits=MediaLimits(max_bytes=1024))


# --------------------------------------------------------------------------- load_image: modes


def _palette_image(transparent: bool) -> Image.Image:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 0)
    if transparent:
        image.info["transparency"] = 0
    return image


def _array_image(values: list[int | float], dtype: str) -> Image.Image:
    return Image.fromarray(np.array([values], dtype=dtype))


# (image, format to round-trip through, {pixel: expected RGB}); values worked out by hand.
MODE_CASES = {
    "1": (Image.new("1", (2, 1), 1), "PNG", {(0, 0): WHITE}),
    "L": (Image.new("L", (2, 2), 100), "PNG", {(0, 0): (100, 100, 100)}),
    "LA": (Image.new("LA", (2, 2), (100, 0)), "PNG", {(0, 0): WHITE}),
    "P": (_palette_image(False), "PNG", {(0, 0): (0, 0, 0), (1, 1): (10, 20, 30)}),
    "P+transparency": (_palette_image(True), "PNG", {(0, 0): WHITE, (1, 1): (10, 20, 30)}),
    "RGBA": (Image.new("RGBA", (2, 2), (200, 100, 50, 0)), "PNG", {(0, 0): WHITE}),
    "CMYK": (Image.new("CMYK", (2, 2), (255, 0, 0, 0)), "TIFF", {(0, 0): (0, 255, 255)}),
    # 16-bit: v -> round(v / 65535 * 255); 1000 must become 4, not be clipped to 255.
    "I;16": (_array_image([0, 1000, 25700, 65535], "uint16"), "PNG", {(1, 0): (4,) * 3, (2, 0): (100,) * 3}),
    "I": (_array_image([0, 25700, 65535], "int32"), "TIFF", {(1, 0): (100,) * 3, (2, 0): WHITE}),
    "F": (_array_image([0.0, 0.5, 1.0], "float32"), "TIFF", {(1, 0): (128,) * 3, (2, 0): WHITE}),
}


@pytest.mark.parametrize("name", list(MODE_CASES))
def test_every_mode_becomes_rgb(name: str, write_file) -> None:
    image, file_format, expected = MODE_CASES[name]
    buffer = io.BytesIO()
    image.save(buffer, format=file_format)
    path = write_file(f"image.{file_format.lower()}", buffer.getvalue())
    assert Image.open(path).mode == image.mode  # the file really holds this mode
    for source in (image, path):
        loaded = load_image(source)
        assert loaded.mode == "RGB" and loaded.size == image.size
        assert {xy: loaded.getpixel(xy) for xy in expected} == expected


def test_partial_alpha_is_composited_on_white() -> None:
    # 100 * 128/255 + 255 * 127/255 = 177.2
    pixel = load_image(Image.new("LA", (1, 1), (100, 128))).getpixel((0, 0))
    assert all(abs(channel - 177) <= 1 for channel in pixel)


def test_float_and_int_modes_outside_the_unit_range() -> None:
    assert np.asarray(load_image(_array_image([10.0, 200.0], "float32")))[0, :, 0].tolist() == [10, 200]
    assert np.asarray(load_image(_array_image([-1.0, 1.0, 3.0], "float32")))[0, :, 0].tolist() == [0, 128, 255]
    assert np.asarray(load_image(_array_image([-100, 0, 100], "int32")))[0, :, 0].tolist() == [0, 128, 255]


def test_exif_orientation_is_applied(write_file) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    loaded = load_image(write_file("rotated.jpg", buffer.getvalue()))
    assert loaded.size == (20, 40)
    top, bottom = loaded.getpixel((10, 5)), loaded.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


# --------------------------------------------------------------------------- load_image: other inputs


def test_arrays_and_tensors() -> None:
    gray = np.full((3, 5), 7, np.uint8)
    assert load_image(gray).size == (5, 3) and load_image(gray).getpixel((0, 0)) == (7, 7, 7)
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert load_image(rgba).getpixel((0, 0)) == WHITE  # fully transparent
    assert load_image(np.full((2, 2, 3), 0.5, np.float32)).getpixel((0, 0)) == (128,) * 3
    assert load_image(np.full((2, 2), 25700, np.uint16)).getpixel((0, 0)) == (100,) * 3
    chw = torch.zeros(3, 4, 6)
    chw[0] = 1.0
    assert load_image(chw).size == (6, 4) and load_image(chw).getpixel((0, 0)) == (255, 0, 0)
    hwc = torch.full((5, 6, 3), 9, dtype=torch.uint8)
    assert load_image(hwc).size == (6, 5) and load_image(hwc).getpixel((0, 0)) == (9, 9, 9)


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((2, 2, 2), np.uint8), "expected an HxW, HxWx3 or HxWx4 array"),
        (np.full((2, 2), 1.5, np.float32), r"float pixels must lie in \[0, 1\]"),
        (np.full((2, 2), np.nan, np.float32), "NaN"),
        (np.full((2, 2), 300, np.int64), r"integer pixels must lie in \[0, 255\]"),
        (np.zeros((0, 4), np.uint8), "empty picture"),
    ],
)
def test_bad_arrays(array: np.ndarray, reason: str) -> None:
    with pytest.raises(MediaError, match=reason):
        load_image(array, item="part 1")


def test_bytes_file_object_and_data_uri(png_bytes: bytes) -> None:
    uri = "data:image/png;base64," + base64.b64encode(png_bytes).decode()
    for source in (png_bytes, io.BytesIO(png_bytes), uri):
        image = load_image(source)
        assert (
            image.size == (16, 8) and image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((15, 0)) == (0, 0, 255)
        )


# --------------------------------------------------------------------------- load_image: failures


def _png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR (with a valid CRC) claims width x height."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


@pytest.mark.parametrize(
    ("width", "height", "reason"),
    [
        (100_000, 100_000, "decompression bomb"),  # Pillow's own guard fires while opening
        (7_000, 7_000, "49000000 pixels, over the limit of 40000000"),  # under Pillow's limit, over ours
    ],
)
def test_decompression_bombs_fail_fast(width: int, height: int, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _png_claiming(width, height)
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("pixels were decoded"))
    start = time.perf_counter()
    with pytest.raises(MediaError, match=reason) as info:
        load_image(bomb, item="message 0, part 1")
    assert time.perf_counter() - start < 0.2
    assert str(info.value).startswith("image (message 0, part 1): ")


def test_pixel_limit_is_checked_before_loading(png_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_image(png_bytes, limits=MediaLimits(max_pixels=128)).size == (16, 8)
    lazy = Image.open(io.BytesIO(png_bytes))
    monkeypatch.setattr(type(lazy), "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(MediaError, match="16x8 = 128 pixels, over the limit of 100"):
        load_image(lazy, limits=MediaLimits(max_pixels=100))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("truncated", "truncated or corrupt file"),
        (b"\x00\x01not an image at all", "unsupported or unrecognised image format"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n", "unsupported or unrecognised image format"),
        (b"", "empty input"),
    ],
)
def test_corrupt_unsupported_and_empty_images(data: bytes | str, reason: str, png_bytes: bytes, write_file) -> None:
    data = png_bytes[: len(png_bytes) // 2] if data == "truncated" else data
    with pytest.raises(MediaError, match=reason) as info:
        load_image(write_file("bad.png", data), item="sample 7")
    assert (info.value.kind, info.value.item) == ("image", "sample 7")


def test_deep_float_images_with_nan_are_refused_like_arrays():
    pixels = np.full((8, 8), 0.25, np.float32)
    pixels[0, 0] = np.nan
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="F").save(buffer, format="TIFF")
    with pytest.raises(MediaError, match=r"image \(part 1\): pixel values contain NaN or infinity"):
        load_image(buffer.getvalue(), item="part 1")


def test_text_limit_is_part_of_media_limits():
    assert MediaLimits().max_text_chars == 1_000_000
    with pytest.raises(ValueError, match="max_text_chars must be positive"):
        MediaLimits(max_text_chars=0)
