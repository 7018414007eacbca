"""Conversion of LLaVA / ShareGPT / messages records, media path safety and record validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omnifuse.data.formats import DatasetFormatError, detect_format, to_messages, validate_record
from omnifuse.data.media_paths import resolve_media_paths
from omnifuse.data.sources import parse_record


def text(s: str) -> dict:
    return {"type": "text", "text": s}


def image(path: str) -> dict:
    return {"type": "image", "path": path}


def user(*parts: dict) -> dict:
    return {"role": "user", "content": list(parts)}


def assistant(s: str) -> dict:
    return {"role": "assistant", "content": [text(s)]}


def llava(img, *turns: str) -> dict:
    """A LLaVA record whose turns alternate human / gpt."""
    conv = [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(turns)]
    return {"image": img, "conversations": conv} if img is not None else {"conversations": conv}


# --- detect_format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"messages": [{"role": "user", "content": [text("hi")]}]}, "messages"),
        ({"messages": [{"role": "user", "content": "<image>hi"}], "images": ["a.png"]}, "sharegpt"),
        (llava("a.png", "<image>hi", "ok"), "llava"),
        ({"conversations": [{"from": "human", "value": "<image>"}], "images": ["a.png"]}, "sharegpt"),
        ({"conversations": [{"role": "user", "content": "hi"}], "videos": ["v.mp4"]}, "sharegpt"),
        ({"conversations": [{"from": "human", "value": "hi"}]}, "sharegpt"),
    ],
)
def test_detect_format_by_keys(obj, expected):
    assert detect_format(obj) == expected


def test_detect_format_unknown_names_found_keys():
    with pytest.raises(DatasetFormatError, match=r"cannot tell the format.*\['prompt', 'response'\]"):
        detect_format({"prompt": "x", "response": "y"})


def test_detect_format_rejects_non_object():
    with pytest.raises(DatasetFormatError, match="expected a JSON object per record, got list"):
        detect_format([1, 2])


# --- LLaVA -----------------------------------------------------------------------------------


def test_llava_image_token_at_start():
    got = to_messages(llava("cat.png", "<image>\nWhat is it?", "A cat."))
    assert got == [user(image("cat.png"), text("What is it?")), assistant("A cat.")]


def test_llava_image_token_in_middle_splits_text():
    got = to_messages(llava("cat.png", "Look at this: <image> What is it?", "A cat."))
    assert got == [user(text("Look at this:"), image("cat.png"), text("What is it?")), assistant("A cat.")]


def test_llava_without_token_prepends_image_to_first_human_turn():
    got = to_messages(llava("cat.png", "What is it?", "A cat.", "Sure?", "Yes."))
    assert got == [
        user(image("cat.png"), text("What is it?")),
        assistant("A cat."),
        user(text("Sure?")),
        assistant("Yes."),
    ]


def test_llava_image_list_matches_tokens_in_order():
    got = to_messages(llava(["a.png", "b.png"], "<image> vs <image>?", "Same."))
    assert got == [user(image("a.png"), text("vs"), image("b.png"), text("?")), assistant("Same.")]


def test_llava_text_only_record_keeps_text_exactly():
    got = to_messages(llava(None, "  Hi there\n", "Hello"), fmt="llava")
    assert got == [user(text("  Hi there\n")), assistant("Hello")]


def test_llava_token_count_mismatch_names_both_counts():
    with pytest.raises(DatasetFormatError, match=r"2 <image> token\(s\).*but 1 image\(s\)") as info:
        to_messages(llava("a.png", "<image><image>", "ok"), source="d.json:4")
    assert str(info.value).startswith("d.json:4: image: ")


def test_llava_system_role_and_unknown_role():
    rec = {"image": "a.png", "conversations": [{"from": "system", "value": "Be brief."}]}
    rec["conversations"] += [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "ok"}]
    got = to_messages(rec)
    assert got[0] == {"role": "system", "content": [text("Be brief.")]}
    rec["conversations"][2]["from"] = "bot"
    with pytest.raises(DatasetFormatError, match=r"conversations\[2\]\.from: unknown role 'bot'"):
        to_messages(rec)


# --- ShareGPT --------------------------------------------------------------------------------


def test_sharegpt_matches_each_modality_in_order_with_system_column():
    rec = {
        "conversations": [
            {"from": "human", "value": "<image>and<image>, then <audio> and <video>"},
            {"from": "gpt", "value": "Done"},
        ],
        "images": ["1.png", "2.png"],
        "audios": ["a.wav"],
        "videos": ["v.mp4"],
        "system": "You see and hear.",
        "id": "r1",
    }
    got = to_messages(rec)
    assert got == [
        {"role": "system", "content": [text("You see and hear.")]},
        user(
            image("1.png"),
            text("and"),
            image("2.png"),
            text(", then"),
            {"type": "audio", "path": "a.wav"},
            text("and"),
            {"type": "video", "path": "v.mp4"},
        ),
        assistant("Done"),
    ]


def test_sharegpt_role_content_variant_under_messages_key():
    rec = {"messages": [{"role": "user", "content": "<image>Hi"}, {"role": "assistant", "content": "Yo"}]}
    rec["images"] = ["https://example.com/a.png"]
    got = to_messages(rec)
    assert got == [user({"type": "image", "url": "https://example.com/a.png"}, text("Hi")), assistant("Yo")]


@pytest.mark.parametrize(("value", "n_tokens"), [("<video> twice <video>", 2), ("no token", 0)])
def test_sharegpt_count_mismatch_names_both_counts(value, n_tokens):
    rec = {"conversations": [{"from": "human", "value": value}, {"from": "gpt", "value": "x"}], "videos": ["v.mp4"]}
    with pytest.raises(DatasetFormatError, match=rf"videos: {n_tokens} <video> token\(s\).*but 1 video\(s\)"):
        to_messages(rec)


def test_sharegpt_undecoded_datasets_media_become_bytes_or_path_parts():
    rec = {"conversations": [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "x"}]}
    rec["images"] = [{"bytes": b"\x89PNG", "path": None}, {"bytes": None, "path": "b.png"}]
    assert to_messages(rec)[0]["content"] == [{"type": "image", "image": b"\x89PNG"}, image("b.png")]


def test_sharegpt_non_string_value_names_field():
    rec = {"conversations": [{"from": "human", "value": None}, {"from": "gpt", "value": "x"}]}
    with pytest.raises(DatasetFormatError, match=r"conversations\[0\]\.value: must be a string, got NoneType"):
        to_messages(rec)


# --- native messages -------------------------------------------------------------------------


def test_messages_string_content_becomes_text_part_and_other_parts_pass_through():
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "image", "url": "https://example.com/x.png"},
    ]
    rec = {"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": "ok"}]}
    assert to_messages(rec) == [{"role": "user", "content": parts}, assistant("ok")]


def test_messages_drops_null_fields_that_arrow_adds():
    rec = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "path": None}], "name": None}]}
    assert to_messages(rec) == [user(text("hi"))]


# --- validate_record -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([user(text("hi"))], r"messages: has no assistant turn"),
        ([user(text("hi")), assistant("a"), user(text("more?"))], r"messages\[2\]\.role: the last turn is 'user'"),
        ([user(text("  ")), assistant("a")], r"messages\[0\]\.content\[0\]: empty text"),
        ([{"role": "bot", "content": "x"}, assistant("a")], r"messages\[0\]\.role: unknown role 'bot'"),
        (
            [user({"type": "PDF file", "path": "x"}), assistant("a")],
            r"messages\[0\]\.content\[0\]: unknown part type 'PDF file'",
        ),
        ([user({"type": "depth"}), assistant("a")], r"messages\[0\]\.content\[0\]: depth part has no source"),
        ([user({"type": "audio"}), assistant("a")], r"messages\[0\]\.content\[0\]: audio part has no source"),
        (
            [user({"type": "image_url", "image_url": {}}), assistant("a")],
            r"messages\[0\]\.content\[0\]: image_url part has no source",
        ),
        (
            [user(text("draw")), {"role": "assistant", "content": [image("x.png")]}],
            r"messages\[1\]\.content\[0\]: image in an assistant turn",
        ),
        ([user(), assistant("a")], r"messages\[0\]\.content: is empty"),
        ([], r"messages: is empty"),
        (
            [user({"type": "text", "text": "the red one", "regions": [{"phrase": "blue", "box": [0, 0, 1, 1]}]}),
             assistant("a")],
            r"messages\[0\]\.content\[0\]: regions\[0\]: phrase 'blue' does not occur",
        ),  # fmt: skip
    ],
)
def test_validate_record_rejects(messages, expected):
    with pytest.raises(DatasetFormatError, match=rf"^s\.jsonl:9: {expected}"):
        validate_record(messages, source="s.jsonl:9")


def test_validate_record_accepts_multi_turn_with_system():
    msgs = [
        {"role": "system", "content": "Be brief."},
        user(text("a")),
        assistant("b"),
        user(text("c")),
        assistant("d"),
    ]
    validate_record(msgs, source="s.jsonl:1")


# --- resolve_media_paths ---------------------------------------------------------------------


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A dataset folder with one image and a symlink that points outside it."""
    root = tmp_path / "ds"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(b"png")
    (tmp_path / "outside.png").write_bytes(b"png")
    os.symlink(tmp_path / "outside.png", root / "img" / "link.png")
    return root


def test_resolve_makes_paths_and_file_urls_absolute(media: Path):
    abs_a = str((media / "img" / "a.png").resolve())
    msgs = [
        user(
            image("img/a.png"),
            {"type": "image", "url": f"file://{abs_a}"},
            {"type": "image", "url": "img/a.png"},
            {"type": "image_url", "image_url": {"url": "img/a.png"}},
            {"type": "image", "url": "data:image/png;base64,AAAA"},
            {"type": "image", "url": "https://example.com/a.png"},
        )
    ]
    got = resolve_media_paths(msgs, media, source="s:1")[0]["content"]
    assert got == [image(abs_a)] * 4 + msgs[0]["content"][4:]


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "img/link.png", "img/../../outside.png"])
def test_resolve_rejects_escapes_naming_the_path(media: Path, bad: str):
    with pytest.raises(DatasetFormatError, match="outside the media folder") as info:
        resolve_media_paths([user(image(bad))], media, source="s.jsonl:3")
    assert repr(bad) in str(info.value)
    assert str(info.value).startswith("s.jsonl:3: messages[0].content[0].path:")


def test_resolve_rejects_escape_through_file_url(media: Path):
    with pytest.raises(DatasetFormatError, match=r"content\[0\]\.url: media path '/etc/passwd'"):
        resolve_media_paths([user({"type": "image", "url": "file:///etc/passwd"})], media, source="s:1")


def test_resolve_rejects_missing_file(media: Path):
    with pytest.raises(DatasetFormatError, match=r"media file 'img/nope\.png' not found"):
        resolve_media_paths([user(image("img/nope.png"))], media, source="s:1")


def test_resolve_allows_base_inside_a_wider_root(media: Path):
    got = resolve_media_paths([user(image("../img/a.png"))], media / "img", source="s:1", root=media)
    assert got[0]["content"][0]["path"] == str((media / "img" / "a.png").resolve())


def test_parse_record_keeps_extra_fields(media: Path):
    raw = llava("img/a.png", "<image>Color?", "Red") | {"id": 5, "question_type": "color"}
    rec = parse_record(raw, source="d.json:2", base_dir=media)
    assert rec.extra == {"id": 5, "question_type": "color"}
    assert rec.messages[0]["content"][0] == image(str((media / "img" / "a.png").resolve()))
