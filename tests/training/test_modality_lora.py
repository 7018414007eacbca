import copy
import json

import pytest
import torch
from peft import PeftModel

from omnifuse import OmniForConditionalGeneration
from omnifuse.interop.llava import ExportError, export_llava
from omnifuse.modeling.encoders import probe_encoder
from omnifuse.modeling.folder import load_omni_folder
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.modeling.tokens import unit_token_count
from omnifuse.training.modality_lora import apply_modality_lora, load_modality_lora, save_mixture_model
from omnifuse.training.recipe import LoraSection, RecipeError, validate_recipe
from omnifuse.training.trainer import train

LORAS = {"image": LoraSection(r=4, target_modules=["q_proj", "v_proj"]), "audio": LoraSection(r=2)}


def build():
    torch.manual_seed(0)
    return OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=64),
        image=tiny_vision_config("siglip_vision_model"),
        audio=tiny_audio_config("whisper"),
    )


def ids_for(model, name):
    spec = model.config.modality_specs()[name]
    return [spec.placeholder_token_id] * unit_token_count(spec, model.config.encoder_spec_for(name))


def samples(model):
    """text-only, image, audio, image+audio prompts with their media."""
    shape = probe_encoder(model.config.modality_specs()["audio"].encoder).input_shape
    pixels, audio = torch.randn(1, 3, 32, 32), torch.randn(1, *shape)
    audio_media = {"input_features": audio, "input_features_mask": torch.ones(1, shape[-1], dtype=torch.long)}
    image, sound = ids_for(model, "image"), ids_for(model, "audio")
    return [
        ([1, 5, 6, 7, 8], {}),
        ([1, 5, *image, 6], {"pixel_values": pixels}),
        ([1, *sound, 6, 7], audio_media),
        ([1, *image, *sound, 6], {"pixel_values": pixels} | audio_media),
    ]


def batch_of(rows):
    pad = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([[0] * (pad - len(r)) + r for r, _ in rows])
    mask = torch.tensor([[0] * (pad - len(r)) + [1] * len(r) for r, _ in rows])
    media = {}
    for _, m in rows:
        for key, value in m.items():
            media.setdefault(key, []).append(value)
    return {"input_ids": ids, "attention_mask": mask} | {k: torch.cat(v) for k, v in media.items()}


@pytest.fixture(scope="module")
def trained():
    """The mixture after 3 optimizer steps on image samples only, and the untouched base."""
    model = build()
    base = copy.deepcopy(model).eval()
    peft_model = apply_modality_lora(model, LORAS, ["projector.image", "language_model"])
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-2)
    image = samples(model)[1]
    for _ in range(3):
        batch = batch_of([image, image])
        peft_model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():  # the audio adapter is untrained (B = 0): give it a delta so the rule is visible
        for name, param in peft_model.named_parameters():
            if "lora_B.audio" in name:
                param.normal_(0, 0.5)
    return peft_model.eval(), base


def logits(model, ids, media):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), **media).logits[0]


def test_text_only_prompt_is_bitwise_the_base_after_training_the_image_adapter(trained):
    peft_model, base = trained
    text, image = samples(base)[0], samples(base)[1]
    assert torch.equal(logits(peft_model, *text), logits(base, *text))
    assert torch.equal(logits(peft_model, *text), logits(base.language_model, text[0], {}))
    assert not torch.allclose(logits(peft_model, *image), logits(base, *image))
    projector_trained = peft_model.get_base_model().projectors["image"].linear_1.weight
    assert not torch.equal(projector_trained, base.projectors["image"].linear_1.weight)


def test_a_sample_gets_the_adapters_of_its_modalities(trained):
    peft_model, base = trained
    both = samples(base)[3]
    with peft_model.disable_adapter():
        bare = logits(peft_model, *both)
    full = logits(peft_model, *both)
    peft_model.base_model.set_adapter(["image"])
    image_only = logits(peft_model, *both)
    peft_model.base_model.set_adapter(["image", "audio"])
    assert not torch.allclose(full, image_only) and not torch.allclose(image_only, bare)


def test_mixed_batch_equals_one_by_one_in_forward_and_generation(trained):
    peft_model, base = trained
    rows = samples(base)
    batch = batch_of(rows)
    pad = batch["input_ids"].shape[1]
    with torch.no_grad():
        together = peft_model(**batch).logits
    for i, (ids, media) in enumerate(rows):
        torch.testing.assert_close(together[i, pad - len(ids) :], logits(peft_model, ids, media), atol=1e-5, rtol=1e-5)
    generated = peft_model.generate(**batch, max_new_tokens=4, do_sample=False)[:, pad:]
    for i, (ids, media) in enumerate(rows):
        one = peft_model.generate(input_ids=torch.tensor([ids]), **media, max_new_tokens=4, do_sample=False)
        assert torch.equal(generated[i], one[0, len(ids) :])


def test_saved_adapters_round_trip_and_merge_one_by_one(trained, tmp_path):
    peft_model, base = trained
    folders = save_mixture_model(peft_model, tmp_path)
    assert sorted(f.name for f in folders) == ["audio", "image"]
    config = json.loads((tmp_path / "modality_lora/image/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "../.." and config["r"] == 4
    plain = OmniForConditionalGeneration.from_pretrained(tmp_path).eval()
    loaded = load_modality_lora(plain, tmp_path).eval()
    for ids, media in samples(base):
        assert torch.equal(logits(loaded, ids, media), logits(peft_model, ids, media))
    image = samples(base)[1]
    fresh = OmniForConditionalGeneration.from_pretrained(tmp_path).eval()
    merged = PeftModel.from_pretrained(fresh, str(tmp_path / "modality_lora/image")).merge_and_unload()
    torch.testing.assert_close(logits(merged, *image), logits(peft_model, *image), atol=1e-5, rtol=1e-5)


def test_recipe_names_adapters_per_modality(tiny_model, bench):
    data = {"model": tiny_model, "data": {"train": str(bench)}, "output_dir": "x",
            "stages": [{"name": "sft", "max_steps": 1, "lora": {"image": {"r": 4}}}]}  # fmt: skip
    recipe = validate_recipe(copy.deepcopy(data))
    assert recipe.stages[0].lora["image"].r == 4
    data["stages"][0]["lora"] = {"image": {"rank": 4}}
    with pytest.raises(RecipeError, match=r"stages\.0\.lora\.image\.rank: unknown key"):
        validate_recipe(copy.deepcopy(data))
    data["stages"][0]["lora"] = {"image": {"r": 4}}
    data["data"] |= {"packing": True, "max_length": 64}
    with pytest.raises(RecipeError, match="packing"):
        validate_recipe(data)


def test_train_writes_a_mixture_that_the_folder_loader_routes(tiny_model, bench, tmp_path):
    out = tmp_path / "mix"
    recipe = validate_recipe({
        "model": tiny_model, "data": {"train": str(bench)}, "output_dir": str(out),
        "stages": [{"name": "sft", "max_steps": 2, "batch_size": 4, "lr": {"language_model": 1e-2},
                    "lora": {"image": {"r": 4, "target_modules": ["q_proj", "v_proj"]}}}],
    })  # fmt: skip
    train(recipe)
    assert (out / "modality_lora/image/adapter_model.safetensors").is_file()
    model, _ = load_omni_folder(out)
    assert isinstance(model, PeftModel) and set(model.peft_config) == {"image"}
    with pytest.raises(ExportError, match=r"per-modality LoRA mixture \['image'\]: LLaVA has one language model"):
        export_llava(out, tmp_path / "llava")
    with pytest.raises(ExportError, match="per-modality LoRA mixture"):
        export_llava(model, tmp_path / "llava", processor=load_omni_folder(out)[1])
    assert not (tmp_path / "llava").exists()
    with pytest.raises(RecipeError, match="'depth' is not a modality"):
        apply_modality_lora(build(), {"depth": LoraSection()}, [])
