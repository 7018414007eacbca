import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, LogitsProcessorList

from omnifuse import OmniConfig, OmniForConditionalGeneration
from omnifuse.modeling.presets import (
    AUDIO_FAMILIES,
    TEXT_FAMILIES,
    VISION_FAMILIES,
    tiny_audio_config,
    tiny_text_config,
    tiny_vision_config,
)
from omnifuse.modeling.tokens import unit_token_count

VOCAB = 64


def build(text="llama", image="siglip_vision_model", audio=None, video=None, projector="mlp"):
    torch.manual_seed(0)
    return OmniForConditionalGeneration.from_components(
        text=tiny_text_config(text, vocab_size=VOCAB),
        image=tiny_vision_config(image) if image else None,
        audio=tiny_audio_config(audio) if audio else None,
        video=video,
        projector=projector,
    ).eval()


def placeholder(model, name):
    return model.config.modality_specs()[name].placeholder_token_id


def tokens(model, name, valid=None):
    spec = model.config.modality_specs()[name]
    return unit_token_count(spec, model.config.encoder_spec_for(name), valid)


def prompt(model, name, n_units, text=(5, 6)):
    return [1, *text] + [placeholder(model, name)] * (tokens(model, name) * n_units) + [7]


@pytest.mark.parametrize("vision", VISION_FAMILIES)
@pytest.mark.parametrize("text", TEXT_FAMILIES)
def test_every_vision_and_lm_family_trains_and_generates(text, vision):
    model = build(text=text, image=vision)
    ids = torch.tensor([prompt(model, "image", 1)])
    pixels = torch.randn(1, 3, 32, 32)
    out = model(input_ids=ids, pixel_values=pixels, labels=ids)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.projectors["image"].linear_1.weight.grad.abs().sum() > 0
    generated = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=2, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 2)


@pytest.mark.parametrize("audio", AUDIO_FAMILIES)
def test_every_audio_family_fuses_variable_length_windows(audio):
    model = build(image=None, audio=audio)
    name = model.config.encoder_spec_for("audio")
    input_name = "input_values" if audio == "wav2vec2" else "input_features"
    shape = (16000 * 10,) if audio == "wav2vec2" else (80, 100)
    values = torch.randn(2, *shape)
    mask = torch.zeros(2, shape[-1], dtype=torch.long)
    valid = [shape[-1], shape[-1] // 3]
    for i, n in enumerate(valid):
        mask[i, :n] = 1
    counts = [tokens(model, "audio", n) for n in valid]
    assert counts[1] < counts[0]
    ids = torch.tensor([[1, 5] + [placeholder(model, "audio")] * sum(counts) + [7]])
    out = model(input_ids=ids, **{input_name: values, f"{input_name}_mask": mask})
    assert out.logits.shape == (1, ids.shape[1], model.config.text_config.vocab_size)
    assert name.encoder["model_type"] == audio


def test_embeddings_hold_projected_features_at_placeholders_and_tokens_elsewhere():
    model = build(video=True)
    img, vid = placeholder(model, "image"), placeholder(model, "video")
    n_img, n_vid = tokens(model, "image"), tokens(model, "video")
    # sample 0: two images then a 2-frame video; sample 1: text only
    row0 = [1, 5] + [img] * n_img + [6] + [img] * n_img + [vid] * (2 * n_vid) + [7]
    row1 = [1] + [8] * (len(row0) - 1)
    ids = torch.tensor([row0, row1])
    pixels, frames = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        embeds = model.embed_inputs(ids, {"pixel_values": pixels, "pixel_values_videos": frames})
        expected_img = model.encode_media("image", pixels)
        expected_vid = model.encode_media("video", frames)
        token_embeds = model.get_input_embeddings()(ids)
    assert torch.equal(embeds[ids == img], expected_img)
    assert torch.equal(embeds[ids == vid], expected_vid)
    text = (ids != img) & (ids != vid)
    assert torch.equal(embeds[text], token_embeds[text])
    assert torch.equal(embeds[1], token_embeds[1])  # the text-only sample is untouched


def test_mismatch_and_missing_media_raise_with_names():
    model = build()
    ids = torch.tensor([prompt(model, "image", 1)[:-3] + [7]])  # two placeholders short
    with pytest.raises(ValueError, match=r"image: 14 placeholder tokens in input_ids but 16 feature vectors"):
        model(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"image: .* but no `pixel_values`"):
        model(input_ids=ids)


def test_save_and_load_round_trip_keeps_logits(tmp_path):
    model = build(text="gpt2", audio="whisper", video=True, projector={"image": "pixel_shuffle", "audio": "qformer"})
    ids = torch.tensor([prompt(model, "image", 1)])
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(input_ids=ids, pixel_values=pixels).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), OmniConfig)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert isinstance(loaded, OmniForConditionalGeneration)
    with torch.no_grad():
        after = loaded(input_ids=ids, pixel_values=pixels).logits
    assert torch.equal(before, after)
    assert loaded.config.modality_specs()["audio"].projector == {"type": "qformer"}


def test_generate_encodes_media_once():
    model = build()
    calls = []
    model.encoders["image"].register_forward_hook(lambda *args: calls.append(1))
    ids = torch.tensor([prompt(model, "image", 1)])
    out = model.generate(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32), max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4
    assert len(calls) == 1


@pytest.mark.parametrize("text", ["llama", "gpt2"])
def test_left_padded_batch_generation_equals_single(text):
    model = build(text=text)
    model.generation_config.pad_token_id = 0
    prompts = [prompt(model, "image", 1, text=(5, 6, 9, 10)), prompt(model, "image", 1, text=(11,))]
    pixels = torch.randn(2, 3, 32, 32)
    singles = [
        model.generate(input_ids=torch.tensor([p]), pixel_values=pixels[i : i + 1], max_new_tokens=6, do_sample=False)[
            0, len(p) :
        ]
        for i, p in enumerate(prompts)
    ]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    batch = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=6, do_sample=False)
    for i, single in enumerate(singles):
        assert batch[i, width:].tolist() == single.tolist()


def test_freeze_and_count_parts():
    model = build(audio="whisper")
    model.freeze("encoders", "language_model")
    counts = model.parameter_counts()
    assert set(counts) == {"encoder.image", "encoder.audio", "projector.image", "projector.audio", "language_model"}
    assert counts["encoder.image"]["trainable"] == 0 and counts["language_model"]["trainable"] == 0
    assert counts["projector.audio"]["trainable"] == counts["projector.audio"]["total"] > 0
    model.unfreeze("encoder.image")
    assert model.parameter_counts()["encoder.image"]["trainable"] == counts["encoder.image"]["total"]
    with pytest.raises(ValueError, match="unknown model part 'decoder'"):
        model.freeze("decoder")


def test_a_generated_placeholder_is_plain_text_while_decoding():
    model = build()
    img = placeholder(model, "image")

    def only_placeholder(input_ids, scores):  # force the model to generate the image placeholder
        forced = torch.full_like(scores, float("-inf"))
        forced[:, img] = 0.0
        return forced

    ids = torch.tensor([prompt(model, "image", 1)])
    out = model.generate(
        input_ids=ids,
        pixel_values=torch.randn(1, 3, 32, 32),
        max_new_tokens=3,
        do_sample=False,
        logits_processor=LogitsProcessorList([only_placeholder]),
    )
    assert out[0, ids.shape[1] :].tolist() == [img] * 3
