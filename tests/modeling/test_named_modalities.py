"""Modalities as data: names the library never mentions (depth, imu) composed, processed, fused and generated."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText

from omnifuse import OmniConfig, OmniForConditionalGeneration, OmniProcessor
from omnifuse.errors import ModalityError, OmnifuseInputError
from omnifuse.modeling.presets import tiny_audio_config, tiny_sequence_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.media import MediaError
from omnifuse.processing.tokenizer import build_bpe_tokenizer

IMU_CHANNELS, IMU_WINDOW = 6, 32


@pytest.fixture(scope="module")
def bundle():
    """image (SigLIP) + depth (a second image-kind modality with its own DINOv2) + audio + imu (sequence)."""
    tok = build_bpe_tokenizer(["what is in the depth map and the imu stream? a box"], vocab_size=300)
    torch.manual_seed(0)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=len(tok)),
        image=tiny_vision_config("siglip_vision_model"),
        audio=tiny_audio_config("whisper"),
        modalities={
            "depth": {"kind": "image", "encoder": tiny_vision_config("dinov2"), "processing": {"mean": [0.5] * 3}},
            "imu": {
                "kind": "sequence",
                "encoder": tiny_sequence_config(IMU_CHANNELS, IMU_WINDOW),
                "projector": "linear",
            },
        },
        tokenizer=tok,
    ).eval()
    return model, OmniProcessor.from_model_config(model.config, tok)


def png(mode: str, value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (40, 24), value).save(buffer, format="PNG")
    return buffer.getvalue()


def conversation(imu_steps: int = 50) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": png("RGB", 200)},
                {"type": "depth", "depth": png("L", 90)},
                {"type": "imu", "array": rng.normal(size=(imu_steps, IMU_CHANNELS))},
                {"type": "audio", "audio": np.zeros(8000, np.float32), "sampling_rate": 16000},
                {"type": "text", "text": "what is in the depth map?"},
            ],
        }
    ]


def test_each_name_gets_its_own_placeholder_batch_key_and_encoder(bundle):
    model, _ = bundle
    specs = model.config.modality_specs()
    assert {n: s.placeholder for n, s in specs.items()} == {
        "image": "<image>", "audio": "<audio>", "depth": "<depth>", "imu": "<imu>"
    }  # fmt: skip
    assert {n: s.batch_key for n, s in specs.items()} == {
        "image": "pixel_values", "audio": "input_features", "depth": "depth_values", "imu": "imu_values"
    }  # fmt: skip
    assert sorted(model.encoders) == ["audio", "depth", "image", "imu"]
    assert type(model.encoders["depth"].model).__name__ == "Dinov2Model"
    assert model.config.modality_specs() is model.config.modality_specs()  # parsed once, not per call


def test_processor_routes_parts_by_name_and_expands_exact_counts(bundle):
    model, processor = bundle
    inputs = processor.apply_chat_template(conversation(imu_steps=50), add_generation_prompt=True)
    assert inputs["depth_values"].shape == (1, 3, 32, 32)
    # 50 imu steps -> 2 windows of 32 frames (the second 18 valid), channels first as the encoder reads them
    assert inputs["imu_values"].shape == (2, IMU_CHANNELS, IMU_WINDOW)
    assert inputs["imu_values_mask"].sum(-1).tolist() == [32, 18]
    ids = inputs["input_ids"][0]
    for name in ("image", "depth", "imu", "audio"):
        spec = model.config.modality_specs()[name]
        placeholders = int((ids == spec.placeholder_token_id).sum())
        rows = model.encode_media(name, inputs[spec.batch_key], inputs.get(spec.mask_key)).shape[0]
        assert placeholders == rows > 0, name


def test_features_land_at_their_own_placeholders(bundle):
    model, processor = bundle
    inputs = processor.apply_chat_template(conversation(), add_generation_prompt=True)
    media = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        embeds = model.embed_inputs(inputs["input_ids"], media)
        for name in ("depth", "imu"):
            spec = model.config.modality_specs()[name]
            where = inputs["input_ids"][0] == spec.placeholder_token_id
            expected = model.encode_media(name, inputs[spec.batch_key], inputs.get(spec.mask_key))
            assert torch.equal(embeds[0][where], expected)


def test_generate_encodes_each_medium_once_and_drops_it_after_prefill(bundle):
    model, processor = bundle
    inputs = processor.apply_chat_template(conversation(), add_generation_prompt=True)
    calls = {name: 0 for name in model.encoders}
    hooks = [
        module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
        for name, module in model.encoders.items()
    ]
    try:
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3
    assert calls == {"image": 1, "audio": 1, "depth": 1, "imu": 1}


def test_save_and_load_keep_logits_through_the_auto_classes(bundle, tmp_path):
    model, processor = bundle
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    reloaded_processor = OmniProcessor.from_pretrained(tmp_path)
    inputs = reloaded_processor.apply_chat_template(conversation(), add_generation_prompt=True)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)
    assert loaded.config.modality_specs()["imu"].kind == "sequence"


def test_a_part_type_may_name_the_kind_of_the_only_modality_of_that_kind(tmp_path):
    tok = build_bpe_tokenizer(["a b c"], vocab_size=280)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config(vocab_size=len(tok)),
        modalities={"camera": {"kind": "image", "encoder": tiny_vision_config()}},
        tokenizer=tok,
    )
    processor = OmniProcessor.from_model_config(model.config, tok)
    data_uri = "data:image/png;base64," + __import__("base64").b64encode(png("RGB", 10)).decode()
    message = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri}}]}]
    inputs = processor.apply_chat_template(message)
    assert inputs["camera_values"].shape[0] == 1
    with pytest.raises(ModalityError, match="no 'audio' modality"):
        processor.apply_chat_template([{"role": "user", "content": [{"type": "audio", "path": "x.wav"}]}])


def test_llava_style_call_takes_any_modality_by_name(bundle):
    model, processor = bundle
    depth = np.full((24, 40), 90, np.uint8)
    out = processor("<depth> and <image> here", images=[png("RGB", 1)], depth=[depth])
    assert out["depth_values"].shape[0] == 1 and out["pixel_values"].shape[0] == 1
    with pytest.raises(ModalityError, match="no 'lidar' modality"):
        processor("<depth>", depth=[depth], lidar=[depth])


def test_sequence_input_errors_name_the_modality_and_item(bundle, tmp_path):
    _, processor = bundle
    bad = np.ones((10, IMU_CHANNELS))
    bad[3, 2] = np.nan
    cases = [
        (np.ones((10, 4)), "has 4 channels; this encoder reads 6"),
        (bad, "NaN or infinite"),
        (b"1,2,3\n4,5", "different numbers of columns"),
    ]
    for array, reason in cases:
        message = [{"role": "user", "content": [{"type": "imu", "array": array}]}]
        with pytest.raises(MediaError, match=rf"^imu \(message 0, part 0\): .*{reason}"):
            processor.apply_chat_template(message)


@pytest.mark.parametrize(
    ("modalities", "reason"),
    [
        ({"Depth": {"kind": "image", "encoder": tiny_vision_config()}}, "must match"),
        ({"text": {"kind": "image", "encoder": tiny_vision_config()}}, "reserved"),
        ({"scan_url": {"kind": "image", "encoder": tiny_vision_config()}}, "reserved"),
        ({"imu": {"encoder": tiny_sequence_config()}}, "give its kind"),
        ({"imu": {"kind": "smell", "encoder": tiny_sequence_config()}}, "kind must be one of"),
        ({"rear": {"kind": "video", "shares_encoder_with": "front"}}, "must come first"),
    ],
)
def test_bad_modality_specs_are_user_errors(modalities, reason):
    with pytest.raises(OmnifuseInputError, match=reason):
        OmniForConditionalGeneration.from_components(text=tiny_text_config(), modalities=modalities)


def test_duplicate_placeholders_or_batch_keys_are_refused():
    encoder = tiny_vision_config().to_dict()
    same_placeholder = {
        "a": {"kind": "image", "encoder": encoder, "placeholder": "<x>"},
        "b": {"kind": "image", "encoder": encoder, "placeholder": "<x>"},
    }
    with pytest.raises(ModalityError, match="both use the placeholder '<x>'"):
        OmniConfig(text_config=tiny_text_config().to_dict(), modalities=same_placeholder)
    same_key = {
        "a": {"kind": "image", "encoder": encoder, "batch_key": "pixels"},
        "b": {"kind": "image", "encoder": encoder, "batch_key": "pixels"},
    }
    with pytest.raises(ModalityError, match="both use the batch_key 'pixels'"):
        OmniConfig(text_config=tiny_text_config().to_dict(), modalities=same_key)
