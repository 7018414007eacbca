import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.errors import ModalityError
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.chat import IGNORE_INDEX
from omnifuse.processing.media import MediaError
from omnifuse.processing.tokenizer import build_bpe_tokenizer

CORPUS = ["what color is the circle? red blue green. <0.5s> <1.5s> describe the sound: high low"] * 4


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    tok = build_bpe_tokenizer(CORPUS, vocab_size=300)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config(vocab_size=len(tok)),
        image=tiny_vision_config(),  # 32 px / 8 px patches: 16 tokens per crop
        audio=tiny_audio_config(),  # whisper: 1 s windows of 100 frames -> 50 tokens
        video=True,
        tokenizer=tok,
        modality_options={"image": {"processing": {"max_tiles": 4}}, "video": {"processing": {"num_frames": 4}}},
    ).eval()
    return model, OmniProcessor.from_model_config(model.config, tok)


def ids_of(processor, name):
    return processor.items[name].placeholder_id


def user(*parts):
    return {"role": "user", "content": list(parts)}


def text(t):
    return {"type": "text", "text": t}


def test_placeholders_expand_to_exact_token_counts(bundle):
    model, processor = bundle
    wide = Image.new("RGB", (64, 32), "red")  # 2:1 -> global view + 2x1 tiles = 3 crops
    half_second = np.zeros(8000, np.float32)  # 50 of 100 frames valid -> 25 whisper tokens
    frames = [np.full((32, 32, 3), i, np.uint8) for i in range(8)]
    msgs = [
        user(
            {"type": "image", "image": wide},
            {"type": "audio", "audio": half_second},
            {"type": "video", "video": frames},
            text("?"),
        )
    ]
    out = processor.apply_chat_template(msgs, add_generation_prompt=True)
    ids = out["input_ids"][0]
    assert int((ids == ids_of(processor, "image")).sum()) == 3 * 16
    assert int((ids == ids_of(processor, "audio")).sum()) == 25
    assert int((ids == ids_of(processor, "video")).sum()) == 4 * 16
    assert out["pixel_values"].shape == (3, 3, 32, 32)
    assert out["pixel_values_videos"].shape == (4, 3, 32, 32)
    assert out["input_features_mask"].sum().item() == 50
    # and the model agrees with every count
    assert model(**out).logits.shape[1] == ids.shape[0]


def test_video_frames_carry_timestamp_markers_in_order(bundle):
    _, processor = bundle
    frames = [np.full((32, 32, 3), i, np.uint8) for i in range(8)]
    out = processor.apply_chat_template([user({"type": "video", "video": frames})])
    video_id = ids_of(processor, "video")
    rendered = processor.decode([t for t in out["input_ids"][0].tolist() if t != video_id])
    # 8 frames at 1 fps sampled to 4 segment centres -> frames 1, 3, 5, 7
    assert [rendered.index(m) for m in ("<1.0s>", "<3.0s>", "<5.0s>", "<7.0s>")] == sorted(
        rendered.index(m) for m in ("<1.0s>", "<3.0s>", "<5.0s>", "<7.0s>")
    )


def test_typed_placeholder_stays_text(bundle):
    _, processor = bundle
    msgs = [user(text("is <image> a token? <audio>"))]
    out = processor.apply_chat_template(msgs)
    ids = out["input_ids"][0].tolist()
    assert ids_of(processor, "image") not in ids and ids_of(processor, "audio") not in ids
    assert "pixel_values" not in out
    assert "is <image> a token? <audio>" in processor.decode(ids)


def test_labels_cover_only_assistant_turns(bundle):
    _, processor = bundle
    msgs = [
        {"role": "system", "content": "be brief"},
        user({"type": "image", "image": Image.new("RGB", (32, 32), "blue")}, text("color?")),
        {"role": "assistant", "content": "blue"},
        user(text("and now?")),
        {"role": "assistant", "content": [text("still blue")]},
    ]
    out = processor.apply_chat_template(msgs, return_labels=True)
    ids, labels = out["input_ids"][0], out["labels"][0]
    supervised = processor.decode(ids[labels != IGNORE_INDEX].tolist())
    assert supervised == "blue<|im_end|>still blue<|im_end|>"
    assert (labels[ids == ids_of(processor, "image")] == IGNORE_INDEX).all()


def test_batch_is_left_padded_for_generation(bundle):
    model, processor = bundle
    short = [user(text("hi"))]
    long = [user({"type": "image", "image": Image.new("RGB", (32, 32))}, text("what color is the circle?"))]
    out = processor.apply_chat_template([short, long], add_generation_prompt=True, padding_side="left")
    assert out["attention_mask"][0, 0] == 0 and out["attention_mask"][1, 0] == 1
    assert out["input_ids"][0, 0] == processor.tokenizer.pad_token_id
    generated = model.generate(**out, max_new_tokens=2, do_sample=False)
    assert generated.shape == (2, out["input_ids"].shape[1] + 2)


def test_media_errors_name_the_item(bundle, tmp_path):
    _, processor = bundle
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(MediaError, match=r"image \(message 0, part 1\)"):
        processor.apply_chat_template([user(text("look"), {"type": "image", "path": str(broken)})])
    with pytest.raises(MediaError, match="image part has no source"):
        processor.apply_chat_template([user({"type": "image"})])
    with pytest.raises(ModalityError, match=r"^hologram \(message 0, part 0\): this model has no 'hologram'"):
        processor.apply_chat_template([user({"type": "hologram"})])


def test_llava_style_call_checks_counts(bundle):
    _, processor = bundle
    img = Image.new("RGB", (32, 32))
    out = processor("<image> describe", images=[img])
    assert int((out["input_ids"] == ids_of(processor, "image")).sum()) == 16
    with pytest.raises(ValueError, match="more placeholders"):
        processor("<image><image>", images=[img])
    with pytest.raises(ValueError, match="left over"):
        processor("no slot", images=[img])


def test_save_and_autoprocessor_round_trip(bundle, tmp_path):
    model, processor = bundle
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, OmniProcessor)
    msgs = [user({"type": "image", "image": Image.new("RGB", (48, 32), "green")}, text("color?"))]
    a, b = processor.apply_chat_template(msgs), loaded.apply_chat_template(msgs)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])


def test_tokenizer_mismatch_is_caught(bundle):
    model, _ = bundle
    other = build_bpe_tokenizer(["x"], vocab_size=280, placeholders=("<img>", "<video>", "<audio>"))
    with pytest.raises(ValueError, match="build the model with this tokenizer"):
        OmniProcessor.from_model_config(model.config, other)
