"""OpenAI / vLLM content parts -> processor parts, for the standard names and any configured modality."""

from __future__ import annotations

import pytest

from omnifuse.errors import ModalityError
from omnifuse.processing.parts import part_modality
from omnifuse.serving.fetch import FetchError, FetchPolicy, fetch_media
from omnifuse.serving.limits import ServerLimits
from omnifuse.serving.parts import convert_messages
from omnifuse.serving.protocol import APIError
from omnifuse.serving.text import TextAssembler

URI = "data:application/octet-stream;base64,AAEC"


def lookup(modalities):
    """The processor's `modality_for` over a set of names (kinds named like their modality)."""

    def modality_for(part_type):
        name = part_modality(part_type)
        if name not in modalities:
            raise ModalityError(f"this model has no {name!r} modality")
        return name

    return modality_for


def convert(content, modalities=("image", "audio", "video", "depth"), role="user"):
    messages = [{"role": role, "content": content}]
    return convert_messages(messages, lookup(set(modalities)), FetchPolicy(), ServerLimits())[0]


def test_standard_and_named_modality_parts_become_bytes():
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": URI}},
        {"type": "video_url", "video_url": URI},
        {"type": "audio_url", "audio_url": {"url": URI}},
        {"type": "input_audio", "input_audio": {"data": "AAEC", "format": "wav"}},
        {"type": "depth", "depth": {"url": URI}},
        {"type": "depth_url", "depth_url": {"url": URI}},
        {"type": "image", "image": URI},
    ]
    parts = convert(content)["content"]
    assert parts[0] == {"type": "text", "text": "look"}
    assert [p["type"] for p in parts[1:]] == ["image", "video", "audio", "audio", "depth", "depth", "image"]
    assert all(p[p["type"]] == b"\x00\x01\x02" for p in parts[1:])


def test_roles_and_plain_strings():
    assert convert("hi", role="developer") == {"role": "system", "content": [{"type": "text", "text": "hi"}]}


@pytest.mark.parametrize(
    ("content", "modalities", "code"),
    [
        ([{"type": "depth", "depth": {"url": URI}}], ("image",), "unsupported_modality"),
        ([{"type": "Depth Map", "depth": {"url": URI}}], ("image",), "invalid_content_part"),
        ([{"type": "image_url", "image_url": {"url": URI}}], ("audio",), "unsupported_modality"),
        ([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}], ("image",), "media_fetch_failed"),
    ],
)
def test_parts_the_model_cannot_take(content, modalities, code):
    with pytest.raises(APIError) as caught:
        convert(content, modalities)
    assert caught.value.status == 400 and caught.value.code == code
    assert caught.value.param == "messages[0].content[0]"


def test_minimal_fetch_only_decodes_data_uris():
    assert fetch_media(URI, FetchPolicy()) == b"\x00\x01\x02"
    for url in ("https://example.com/x.png", "/etc/passwd", "file:///etc/passwd"):
        with pytest.raises(FetchError):
            fetch_media(url, FetchPolicy())
    with pytest.raises(FetchError, match="over the limit"):
        fetch_media("data:;base64," + "A" * 400, FetchPolicy(max_bytes=100))


class ByteTokenizer:
    """Token i is the character chr(i): enough to test streaming text and stop strings."""

    def decode(self, tokens, skip_special_tokens=True):
        return "".join(chr(t) for t in tokens)


def test_stop_strings_are_held_back_then_cut():
    text = TextAssembler(ByteTokenizer(), stop=("END",))
    shown = [text.add(ord(c)) for c in "abEN"]
    assert "".join(d for d, _ in shown) == "ab" and not any(s for _, s in shown)  # "EN" may start "END"
    delta, stopped = text.add(ord("D"))
    assert stopped and delta == "" and text.text == "ab"
    other = TextAssembler(ByteTokenizer(), stop=("END",))
    for c in "abEN":
        other.add(ord(c))
    assert other.add(ord("x")) == ("ENx", False) and other.flush() == ""
