"""Hostile input gets a 4xx with an OpenAI-style error body, and the server keeps serving after each one."""

from __future__ import annotations

import base64
import functools
import io
import json
import struct
import wave
import zlib

import httpx
import pytest

from .conftest import start_server


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def png_bomb(side: int = 40000) -> bytes:
    """A valid 1-bit PNG of side x side pixels: ~200 MB of rows compressed to a few hundred KB."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row_block = b"\x00" * ((side // 8 + 1) * 1000)
    body = b"".join(packer.compress(row_block) for _ in range(side // 1000)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def long_wav(seconds: float, rate: int = 1000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(b"\x80" * int(seconds * rate))
    return buffer.getvalue()


def image_part(uri: str) -> dict:
    return {"type": "image_url", "image_url": {"url": uri}}


def body(content, **options) -> dict:
    return {
        "model": "tiny",
        "max_tokens": 2,
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
        **options,
    }


def post(url: str, payload=None, **kwargs) -> httpx.Response:
    if payload is not None:
        kwargs["json"] = payload
    return httpx.post(f"{url}/v1/chat/completions", timeout=120, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["type"]
    for word in words:
        assert word in error["message"], error["message"]
    return error


def assert_still_serving(url: str) -> None:
    response = post(url, body("red"))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1


def test_corrupt_image_bytes(served, media):
    corrupt = media.png()[:40] + b"\x00garbage" * 10
    assert_openai_error(post(served.url, body([image_part(media.data_uri(corrupt, "image/png"))])), 400, "image")
    assert_still_serving(served.url)


def test_one_by_one_image_is_answered_not_crashing(served, media):
    """vLLM advisory (1x1 image DoS): a 1x1 image crashed the image processor and took the server down."""
    tiny = image_part(media.data_uri(media.png(1, 1), "image/png"))
    response = post(served.url, body([tiny, {"type": "text", "text": "what is it?"}]))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 10
    assert_still_serving(served.url)


def test_png_decompression_bomb_is_refused_before_decoding(served, media):
    response = post(served.url, body([image_part(media.data_uri(png_bomb(), "image/png"))]))
    assert_openai_error(response, 400, "1600000000 pixels")
    assert_still_serving(served.url)


def test_ten_thousand_frame_video_is_refused(served, media):
    """vLLM advisory (unbounded video frames): a video's frames were all decoded into memory, no cap."""
    video = media.video(frames=10_000, fps=1000, size=16)
    content = [{"type": "video_url", "video_url": {"url": media.data_uri(video, "video/mp4")}}]
    assert_openai_error(post(served.url, body(content)), 400, "10000 frames", "max_decoded_frames")
    assert_still_serving(served.url)


def test_two_hours_of_audio_are_refused(served):
    audio = {"data": base64.b64encode(long_wav(2 * 3600)).decode(), "format": "wav"}
    response = post(served.url, body([{"type": "input_audio", "input_audio": audio}]))
    assert_openai_error(response, 400, "7200.0 s", "max_audio_seconds")
    assert_still_serving(served.url)


def test_fifty_images_in_one_request(served, media):
    content = [image_part(media.data_uri(media.png(), "image/png"))] * 50
    error = assert_openai_error(post(served.url, body(content)), 400, "max_media_items")
    assert error["code"] == "too_many_media_items"
    assert_still_serving(served.url)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ([{"type": "hologram", "hologram": {"url": "data:,x"}}], ["no 'hologram' modality"]),
        ([{"type": "image_url", "image_url": {"link": "x"}}], ["messages[0].content[0]", "url"]),
        ([{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}], ["local files are disabled"]),
        (
            [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}],
            ["not in the allowed media domains"],
        ),
        ([{"type": "input_audio", "input_audio": {"data": "@@not base64@@", "format": "wav"}}], ["base64"]),
        ([{"type": "text", "text": 5}], ["string 'text'"]),
    ],
    ids=["unknown-type", "no-url", "file-url", "metadata-url", "bad-base64", "text-not-string"],
)
def test_bad_content_parts(served, content, words):
    assert_openai_error(post(served.url, body(content)), 400, *words)
    assert_still_serving(served.url)


def test_media_in_an_assistant_turn_is_refused(served, media):
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [image_part(media.data_uri(media.png(), "image/png"))]},
    ]
    payload = {"model": "tiny", "max_tokens": 2, "messages": messages}
    assert_openai_error(post(served.url, payload), 400, "user messages only")


def test_malformed_json(served):
    truncated = b'{"model": "tiny", "messages": ['
    response = post(served.url, content=truncated, headers={"content-type": "application/json"})
    assert assert_openai_error(response, 400, "not valid JSON")["code"] == "invalid_json"
    assert_openai_error(post(served.url, content=b"[1, 2]"), 400, "JSON object")
    assert_still_serving(served.url)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", "5"),
        ("temperature", "hot"),
        ("messages", "hi"),
        ("stream", "yes"),
        ("top_p", 3),
        ("max_tokens", 0),
        ("n", 2),
        ("stop", 7),
        ("seed", 1.5),
        ("messages", [{"role": "wizard", "content": "x"}]),
    ],
)
def test_wrong_field_types(served, field, value):
    error = assert_openai_error(post(served.url, body("red", **{field: value})), 400)
    assert error["param"].startswith(field)
    assert_still_serving(served.url)


def test_unknown_model_and_too_many_tokens(served):
    assert assert_openai_error(post(served.url, {**body("red"), "model": "gpt-9"}), 404)["code"] == "model_not_found"
    assert_openai_error(post(served.url, body("red", max_tokens=100_000)), 400, "limit")
    error = assert_openai_error(post(served.url, body("red " * 600, max_tokens=10)), 400, "context")
    assert error["code"] == "context_length_exceeded"


def test_twenty_megabyte_body_is_refused(served):
    big = json.dumps(body("x" * 20 * 2**20)).encode()
    assert_openai_error(post(served.url, content=big), 413, "max_body_bytes")

    def chunks():  # no Content-Length: counted while read
        for start in range(0, len(big), 2**20):
            yield big[start : start + 2**20]

    assert_openai_error(post(served.url, content=chunks()), 413, "max_body_bytes")
    assert_still_serving(served.url)


@pytest.fixture(scope="module")
def strict(loaded):
    from omnifuse.serving.limits import ServerLimits

    limits = ServerLimits(
        max_media_items=2,
        max_media_bytes=60_000,
        max_item_bytes=50_000,
        max_pixels=10_000,
        max_decoded_frames=20,
        max_audio_seconds=1.0,
        max_tokens=8,
    )
    server, url = start_server(loaded, limits=limits)
    yield url
    server.shutdown()


def test_per_request_limits(strict, media):
    def uri(data: bytes, mime: str) -> dict:
        return media.data_uri(data, mime)

    assert_openai_error(post(strict, body([image_part(uri(media.png(200, 100), "image/png"))])), 400, "max_pixels")
    three = [image_part(uri(media.png(), "image/png"))] * 3
    assert_openai_error(post(strict, body(three)), 400, "max_media_items")
    noisy = bytes(range(256)) * 180  # 46 KB that do not compress: over max_media_bytes twice
    parts = [image_part(uri(noisy, "image/png")), image_part(uri(noisy, "image/png"))]
    assert_openai_error(post(strict, body(parts)), 413, "max_media_bytes")
    assert_openai_error(post(strict, body([image_part(uri(noisy * 2, "image/png"))])), 400, "50000")
    video = {"type": "video_url", "video_url": {"url": uri(media.video(frames=30, fps=30), "video/mp4")}}
    assert_openai_error(post(strict, body([video])), 400, "max_decoded_frames")
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(media.wav(1.5)).decode()}}
    assert_openai_error(post(strict, body([audio])), 400, "max_audio_seconds")
    assert_openai_error(post(strict, body("red", max_tokens=9)), 400, "max_tokens")
    assert_still_serving(strict)


def test_pillow_through_the_video_path_is_refused(strict, served, media):
    """vLLM advisory (Pillow leak via video): video bytes reached Pillow, bypassing the image pixel limits.

    Here a video is only ever opened by FFmpeg's whitelisted containers, with the pixel limit checked on
    its header: an image bomb sent as a video and a video with oversized frames are both refused.
    """
    bomb = {"type": "video_url", "video_url": {"url": media.data_uri(png_bomb(), "video/mp4")}}
    assert_openai_error(post(served.url, body([bomb])), 400, "video")
    big_frames = {"type": "video_url", "video_url": {"url": media.data_uri(media.video(size=128), "video/mp4")}}
    assert_openai_error(post(strict, body([big_frames])), 400, "128x128", "max_pixels")
    assert_still_serving(served.url)


def test_wrong_api_key_is_401(loaded):
    server, url = start_server(loaded, api_key="s3cret")
    try:
        error = assert_openai_error(post(url, body("red")), 401)
        assert error["type"] == "authentication_error"
        assert post(url, body("red"), headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200
    finally:
        server.shutdown()
