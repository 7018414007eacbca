import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from omnifuse import OmniForConditionalGeneration
from omnifuse.errors import ModalityError
from omnifuse.interop.llava import check_llava_compatible
from omnifuse.modeling.cross_attention import decoder_layers
from omnifuse.modeling.encoders import probe_encoder
from omnifuse.modeling.presets import TEXT_FAMILIES, tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.modeling.projectors import projector_output_length
from omnifuse.modeling.routing import build_memory
from omnifuse.modeling.tokens import encoder_token_count, unit_token_count
from omnifuse.processing.processor import OmniProcessor
from omnifuse.processing.tokenizer import build_bpe_tokenizer

CROSS = {"fusion": "cross_attention", "cross_attention_every": 2}


def build(text="llama", layers=3, audio=False, options=None):
    torch.manual_seed(0)
    return OmniForConditionalGeneration.from_components(
        text=tiny_text_config(text, vocab_size=64, layers=layers),
        image=tiny_vision_config("siglip_vision_model"),
        audio=tiny_audio_config("whisper") if audio else None,
        modality_options={"image": dict(CROSS)} | (options or {}),
    ).eval()


def marker(model, name="image"):
    return model.config.modality_specs()[name].placeholder_token_id


def bare_lm(model):
    return copy.deepcopy(model.language_model).eval()


def open_gates(model, value=0.7):
    with torch.no_grad():
        for name, param in model.cross_attention.named_parameters():
            if name.endswith("_gate"):
                param.fill_(value)


@pytest.mark.parametrize("text", TEXT_FAMILIES)
def test_fresh_blocks_leave_the_lm_unchanged_in_every_family(text):
    model = build(text)
    assert sorted(model.cross_attention.blocks["image"]) == ["0", "2"]  # every 2nd of 3 layers
    ids = torch.tensor([[1, 5, marker(model), marker(model), 6, 7]])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model(input_ids=ids, pixel_values=pixels).logits
        bare = bare_lm(model)(input_ids=ids).logits
    assert torch.equal(ours, bare)
    open_gates(model)
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids, pixel_values=pixels).logits, bare)


def test_units_become_one_marker_each_and_layers_are_found_generically():
    model = build()
    tokenizer = build_bpe_tokenizer(["what is it"], vocab_size=300)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=len(tokenizer), layers=2),
        image=tiny_vision_config("siglip_vision_model"),
        modality_options={"image": {"fusion": "cross_attention"}},
        tokenizer=tokenizer,
    )
    processor = OmniProcessor.from_model_config(model.config, tokenizer)
    messages = [{"role": "user", "content": [{"type": "image", "image": torch.rand(3, 32, 32)},
                                             {"type": "text", "text": "what is it"}]}]  # fmt: skip
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert int((inputs["input_ids"] == marker(model)).sum()) == inputs["pixel_values"].shape[0] == 1
    gpt2 = AutoModelForCausalLM.from_config(tiny_text_config("gpt2", layers=3))
    assert decoder_layers(gpt2) is gpt2.transformer.h


def test_trained_blocks_change_media_rows_only_and_gradients_reach_them():
    model = build()
    open_gates(model)
    ids = torch.tensor([[1, 5, marker(model), 6, 7], [1, 5, 6, 6, 7]])
    out = model(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32), labels=ids)
    out.loss.backward()
    assert model.cross_attention.blocks["image"]["0"].key.weight.grad.abs().sum() > 0
    assert model.projectors["image"].linear_1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        text_only = model(input_ids=ids[1:]).logits
        bare = bare_lm(model)(input_ids=ids).logits
    assert torch.equal(text_only, bare_lm(model)(input_ids=ids[1:]).logits)  # a text-only prompt: bitwise the bare LM
    assert torch.equal(out.logits[1].detach(), bare[1])  # and its row in a batch with an image
    assert not torch.allclose(out.logits[0].detach(), bare[0])


def test_mixed_batch_equals_one_by_one_and_mixes_with_placeholder_audio():
    model = build(audio=True)
    open_gates(model)
    audio = model.config.modality_specs()["audio"]
    n_audio = unit_token_count(audio, audio)
    a = [1, 5, marker(model), marker(model), 6]  # one image of two crops
    b = [1, 5] + [marker(model, "audio")] * n_audio + [6]
    c = [1, 5, marker(model), 6, 7]
    pixels = {"a": torch.randn(2, 3, 32, 32), "c": torch.randn(1, 3, 32, 32)}
    shape = probe_encoder(audio.encoder).input_shape
    features = torch.randn(1, *shape)
    pad = max(map(len, (a, b, c)))

    def left(row):
        return [0] * (pad - len(row)) + row

    ids = torch.tensor([left(a), left(b), left(c)])
    mask = (torch.arange(pad)[None] >= torch.tensor([pad - len(a), pad - len(b), pad - len(c)])[:, None]).long()
    with torch.no_grad():
        batch = model(
            input_ids=ids, attention_mask=mask, pixel_values=torch.cat([pixels["a"], pixels["c"]]),
            input_features=features, input_features_mask=torch.ones(1, shape[-1], dtype=torch.long),
        ).logits  # fmt: skip
        one_a = model(input_ids=torch.tensor([a]), pixel_values=pixels["a"]).logits
        one_b = model(input_ids=torch.tensor([b]), input_features=features,
                      input_features_mask=torch.ones(1, shape[-1], dtype=torch.long)).logits  # fmt: skip
        one_c = model(input_ids=torch.tensor([c]), pixel_values=pixels["c"]).logits
    torch.testing.assert_close(batch[0, pad - len(a) :], one_a[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[1, pad - len(b) :], one_b[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[2, pad - len(c) :], one_c[0], atol=1e-5, rtol=1e-5)


def test_generation_encodes_media_once_and_batches_like_single_prompts():
    model = build()
    open_gates(model)
    calls = []
    model.encoders["image"].register_forward_hook(lambda *args: calls.append(1))
    a, c = [1, 5, marker(model), 6], [1, 7, 8, marker(model), marker(model), 6]
    pix_a, pix_c = torch.randn(1, 3, 32, 32), torch.randn(2, 3, 32, 32)
    single = [
        model.generate(input_ids=torch.tensor([row]), pixel_values=p, max_new_tokens=4, do_sample=False)[0, len(row) :]
        for row, p in ((a, pix_a), (c, pix_c))
    ]
    assert len(calls) == 2  # once per generation, not once per step
    ids = torch.tensor([[0, 0] + a, c])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])
    batched = model.generate(input_ids=ids, attention_mask=mask, pixel_values=torch.cat([pix_a, pix_c]),
                             max_new_tokens=4, do_sample=False)[:, 6:]  # fmt: skip
    assert torch.equal(batched[0], single[0]) and torch.equal(batched[1], single[1])


def test_save_load_round_trip_keeps_blocks_and_logits(tmp_path):
    model = build()
    open_gates(model, 0.3)
    model.save_pretrained(tmp_path)
    loaded = OmniForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.modality_specs()["image"].fusion == "cross_attention"
    ids = torch.tensor([[1, 5, marker(model), 6]])
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, pixel_values=pixels).logits,
                           loaded(input_ids=ids, pixel_values=pixels).logits)  # fmt: skip


def test_export_refuses_cross_attention():
    problems = check_llava_compatible(build())
    assert "image: fusion 'cross_attention' has no LLaVA equivalent" in problems[0]


def test_marker_and_unit_counts_must_agree():
    model = build()
    ids = torch.tensor([[1, 5, marker(model), 6]])
    with pytest.raises(ModalityError, match="image: 1 marker tokens in input_ids but 2 units"):
        model(input_ids=ids, pixel_values=torch.randn(2, 3, 32, 32))
    with pytest.raises(ModalityError, match="fusion must be one of"):
        build(options={"image": {"fusion": "gated"}})


def test_blocks_are_a_part_that_every_stage_trains_with_the_projector_rate():
    from omnifuse.training.stages import lr_group, trained_parts

    model = build()
    assert trained_parts(model, "align") == ["projector.image", "cross_attention.image"]
    assert "language_model" not in trained_parts(model, "align")
    assert "cross_attention.image" in trained_parts(model, "sft") and lr_group("cross_attention.image") == "projectors"
    model.freeze("cross_attention")
    assert model.parameter_counts()["cross_attention.image"]["trainable"] == 0


def test_windowed_audio_through_cross_attention_keeps_only_valid_frames():
    model = build(audio=True, options={"audio": dict(CROSS)})
    open_gates(model)
    audio = model.config.modality_specs()["audio"]
    shape = probe_encoder(audio.encoder).input_shape
    features = torch.randn(2, *shape)  # two windows, the second half valid
    valid = torch.ones(2, shape[-1], dtype=torch.long)
    valid[1, shape[-1] // 2 :] = 0
    ids = torch.tensor([[1, 5, marker(model, "audio"), marker(model, "audio"), 6], [1, 5, 6, 7, 8]])
    with torch.no_grad():
        memory = build_memory(model, "audio", ids, features, valid)
    tokens = [projector_output_length(audio.projector, encoder_token_count(audio, n), "sequence") for n in (100, 50)]
    assert shape[-1] == 100 and tokens[1] < tokens[0]
    assert memory.key_mask.sum(-1).tolist() == [sum(tokens), 0]  # padded frames never become keys
    assert memory.row_mask.tolist() == [True, False]
    with torch.no_grad():
        out = model(input_ids=ids, input_features=features, input_features_mask=valid).logits
        assert torch.equal(out[1], bare_lm(model)(input_ids=ids).logits[1])


def test_inputs_embeds_alone_cannot_route_and_says_so():
    model = build()
    embeds = model.get_input_embeddings()(torch.tensor([[1, 5, 6]]))
    with pytest.raises(ModalityError, match="cross-attention fusion need input_ids at prefill"):
        model(inputs_embeds=embeds)
