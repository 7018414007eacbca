"""LLaVA interop: export parity under transformers alone, incompatibility reports, import of both key layouts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.interop.llava import ExportError, check_llava_compatible, export_llava, import_llava
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer

TOLERANCE = 1e-5
NEW_TOKENS = 8
CORPUS = ["what color is the circle? the circle is red. which shape is blue? a green square and a triangle."] * 20
HUB_PREFIXES = (
    "language_model.model.",
    "language_model.lm_head.",
    "vision_tower.vision_model.",
    "multi_modal_projector.",
)
# Runs in a fresh interpreter that never imports omnifuse: the exported folder must stand on transformers alone.
CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    jobs, results = json.load(open(sys.argv[1])), {}
    for case, job in jobs.items():
        processor = AutoProcessor.from_pretrained(job["folder"])
        model = AutoModelForImageTextToText.from_pretrained(job["folder"]).eval()
        runs = {}
        for prompt, messages in job["prompts"].items():
            inputs = processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
            with torch.no_grad():
                logits = model(**inputs).logits
            out = model.generate(**inputs, max_new_tokens=job["new_tokens"], do_sample=False)
            runs[prompt] = dict(inputs, logits=logits, generated=out[:, inputs["input_ids"].shape[1] :])
        results[case] = {"model": type(model).__name__, "processor": type(processor).__name__, "runs": runs}
    results["omnifuse_imported"] = "omnifuse" in sys.modules
    torch.save(results, sys.argv[2])
    """
)
CASES = {  # name: (text family, tied embeddings, vision tower, select strategy, feature layer)
    "clip-llama": ("llama", False, "clip_vision_model", "default", -2),
    "siglip-qwen2-tied": ("qwen2", True, "siglip_vision_model", "full", -1),
    "clip-gpt2-tied": ("gpt2", True, "clip_vision_model", "default", -1),
}


@pytest.fixture(scope="module")
def tok():
    return build_bpe_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> dict[str, list[dict]]:
    """A one-image prompt and a two-turn prompt with two images (non-square, so resizing matters)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(40, 50), (20, 30)]):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    single = [
        {"role": "user", "content": [{"type": "image", "path": paths[0]}, {"type": "text", "text": "what color?"}]}
    ]
    two = [
        {"role": "user", "content": [{"type": "image", "path": paths[0]}, {"type": "text", "text": "which shape?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a green square"}]},
        {"role": "user", "content": [{"type": "text", "text": "and here?"}, {"type": "image", "path": paths[1]}]},
    ]
    return {"single": single, "two-images": two}


def build(tok, text, tied, vision, strategy, layer, seed=0):
    torch.manual_seed(seed)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config(text, vocab_size=len(tok), tie_word_embeddings=tied),
        image=tiny_vision_config(vision),
        tokenizer=tok,
        modality_options={"image": {"feature_layer": layer, "select_strategy": strategy}},
    ).eval()
    return model, OmniProcessor.from_model_config(model.config, tok)


@pytest.fixture(scope="module")
def exported(tok, prompts, tmp_path_factory):
    """Every case exported (clip-llama from a saved omnifuse folder, the way the CLI does), then run by CHILD."""
    root = tmp_path_factory.mktemp("export")
    cases, jobs = {}, {}
    for name, spec in CASES.items():
        model, processor = build(tok, *spec)
        source = model
        if name == "clip-llama":
            source = root / f"{name}-omnifuse"
            model.save_pretrained(source)
            processor.save_pretrained(source)
        out = root / name
        info = export_llava(source, out, processor=None if name == "clip-llama" else processor)
        cases[name] = {"model": model, "processor": processor, "out": out, "info": info}
        jobs[name] = {"folder": str(out), "prompts": prompts, "new_tokens": NEW_TOKENS}
    (root / "jobs.json").write_text(json.dumps(jobs))
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(root / "jobs.json"), str(root / "results.pt")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = torch.load(root / "results.pt")
    return cases, results


def test_export_writes_llava_config_hub_layout_and_processor_files(exported):
    cases, _ = exported
    case = cases["clip-llama"]
    out = case["out"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llava" and config["architectures"] == ["LlavaForConditionalGeneration"]
    assert config["vision_config"]["model_type"] == "clip_vision_model"
    assert config["text_config"]["architectures"] == ["LlamaForCausalLM"]
    assert (config["vision_feature_layer"], config["vision_feature_select_strategy"]) == (-2, "default")
    assert (config["projector_hidden_act"], config["image_seq_length"]) == ("gelu", 16)
    assert config["image_token_index"] == case["model"].config.modality_specs()["image"].placeholder_token_id
    saved = json.loads((out / "processor_config.json").read_text())
    assert (saved["patch_size"], saved["num_additional_image_tokens"], saved["image_token"]) == (8, 1, "<image>")
    for name in ("tokenizer.json", "chat_template.jinja", "preprocessor_config.json", "generation_config.json"):
        assert (out / name).exists(), name
    assert not (out / "omnifuse_processor.json").exists()
    keys = set(load_file(out / "model.safetensors"))
    assert all(key.startswith(HUB_PREFIXES) for key in keys), sorted(keys)[:5]
    assert len(keys) == len(case["model"].state_dict())
    assert case["info"]["format"] == "llava" and case["info"]["image_tokens"] == 16


@pytest.mark.parametrize("case", list(CASES))
def test_transformers_alone_reproduces_inputs_logits_and_generations(exported, prompts, case):
    cases, results = exported
    assert results["omnifuse_imported"] is False
    assert results[case]["model"] == "LlavaForConditionalGeneration"
    assert results[case]["processor"] == "LlavaProcessor"
    model, processor = cases[case]["model"], cases[case]["processor"]
    for prompt, theirs in results[case]["runs"].items():
        ours = processor.apply_chat_template(prompts[prompt], add_generation_prompt=True)
        assert torch.equal(ours["input_ids"], theirs["input_ids"]), prompt
        assert torch.equal(ours["pixel_values"], theirs["pixel_values"]), prompt
        with torch.no_grad():
            logits = model(**ours).logits
        diff = (logits - theirs["logits"]).abs().max().item()
        print(f"export {case} {prompt}: max abs logit diff {diff:.3g}")
        assert diff <= TOLERANCE
        generated = model.generate(**ours, max_new_tokens=NEW_TOKENS, do_sample=False)
        assert generated[:, ours["input_ids"].shape[1] :].tolist() == theirs["generated"].tolist(), prompt


def test_tied_embeddings_stay_tied_only_where_llava_can_retie(exported):
    cases, _ = exported
    for case, tied, has_head in [("siglip-qwen2-tied", True, False), ("clip-gpt2-tied", False, True)]:
        out = cases[case]["out"]
        config = json.loads((out / "config.json").read_text())
        assert config["tie_word_embeddings"] is tied and config["text_config"]["tie_word_embeddings"] is tied
        assert ("language_model.lm_head.weight" in load_file(out / "model.safetensors")) is has_head


def test_incompatible_model_lists_every_reason_and_writes_nothing(tok, tmp_path):
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=len(tok)),
        image=tiny_vision_config("dinov2"),
        audio=tiny_audio_config("whisper"),
        video=True,
        projector={"image": "perceiver", "audio": "mlp", "video": "mlp"},
        tokenizer=tok,
        modality_options={"image": {"processing": {"max_tiles": 4}}},
    )
    expected = [
        "video modality present ('video'): LLaVA has an image path only",
        "audio modality present ('audio'): LLaVA has an image path only",
        "vision tower 'dinov2' is not clip_vision_model/siglip_vision_model",
        "projector 'perceiver' is not mlp",
        "image tiling max_tiles=4 has no LLaVA equivalent (one 32px view per image)",
    ]
    assert sorted(check_llava_compatible(model)) == sorted(expected)
    processor = OmniProcessor.from_model_config(model.config, tok)
    with pytest.raises(ExportError) as err:
        export_llava(model, tmp_path / "out", processor=processor)
    lines = str(err.value).splitlines()
    assert lines[0] == "cannot export as LLaVA:" and sorted(lines[1:]) == sorted(f"- {r}" for r in expected)
    assert not (tmp_path / "out").exists()


def test_projector_feature_layers_and_logit_scaling_are_reported(tok):
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config("gemma2", vocab_size=len(tok), head_dim=8, final_logit_softcapping=30.0),
        image=tiny_vision_config("clip_vision_model"),
        projector={"type": "mlp", "hidden_act": "tanh"},
        tokenizer=tok,
        modality_options={"image": {"feature_layer": [-2, -1]}},
    )
    assert check_llava_compatible(model.config) == [
        "mlp projector activation 'tanh' is not one of gelu, gelu_fast, gelu_new, gelu_pytorch_tanh, quick_gelu, "
        "relu, silu",
        "feature_layer [-2, -1] is a list: vLLM's LLaVA projects a single layer",
        "language model 'gemma2' rescales its logits (final_logit_softcapping=30.0); LLaVA's lm_head does not",
    ]


def test_lora_is_reported_then_merged_by_export(tok, prompts, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, processor = build(tok, *CASES["clip-llama"])
    lora = LoraConfig(target_modules=r".*language_model.*\.(q_proj|v_proj)", r=4, init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    assert check_llava_compatible(peft_model) == [
        "LoRA adapters not merged (4 adapted layers): call merge_and_unload() first"
    ]
    inputs = processor.apply_chat_template(prompts["two-images"], add_generation_prompt=True)
    with torch.no_grad():
        expected = peft_model(**inputs).logits
    info = export_llava(peft_model, tmp_path, processor=processor)
    assert info["lora_merged"] is True
    llava = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert (llava(**inputs).logits - expected).abs().max().item() <= TOLERANCE


def test_lora_adapter_folder_from_training_is_merged_by_export(tok, prompts, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, processor = build(tok, *CASES["clip-llama"])
    model.save_pretrained(tmp_path / "base")
    lora = LoraConfig(target_modules=r".*language_model.*\.(q_proj|v_proj)", r=4, init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    peft_model.peft_config["default"].base_model_name_or_path = str(tmp_path / "base")
    peft_model.save_pretrained(tmp_path / "adapter")  # the layout a LoRA training stage writes
    processor.save_pretrained(tmp_path / "adapter")
    inputs = processor.apply_chat_template(prompts["single"], add_generation_prompt=True)
    with torch.no_grad():
        expected = peft_model(**inputs).logits
    assert check_llava_compatible(tmp_path / "adapter") == [
        "LoRA adapters not merged (4 adapted layers): call merge_and_unload() first"
    ]
    assert export_llava(tmp_path / "adapter", tmp_path / "llava")["lora_merged"] is True
    llava = LlavaForConditionalGeneration.from_pretrained(tmp_path / "llava").eval()
    with torch.no_grad():
        assert (llava(**inputs).logits - expected).abs().max().item() <= TOLERANCE


# -- import --
@pytest.fixture(scope="module")
def llava_source(tok, tmp_path_factory):
    """A tiny LLaVA saved by transformers itself (llava-1.5 style CLIP processor), plus its in-memory model."""
    folder = tmp_path_factory.mktemp("llava-source")
    config = LlavaConfig(
        text_config=tiny_text_config("llama", vocab_size=len(tok)).to_dict(),
        vision_config=tiny_vision_config("clip_vision_model").to_dict(),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=16,
    )
    torch.manual_seed(1)
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tok.chat_template,
    )
    processor.save_pretrained(folder)
    return folder, model, processor


def relayout(key: str, layout: str) -> str:
    """transformers 5.x writes `language_model.model.*`, `vision_tower.*`...; rewrite to another layout."""
    if layout == "current":
        for old, new in [("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head.")]:
            if key.startswith(old):
                return new + key[len(old) :]
        return "model." + key
    if layout == "old-nested" and key.startswith("vision_tower."):
        return "vision_tower.vision_model." + key[len("vision_tower.") :]
    return key


@pytest.mark.parametrize("layout", ["as-saved", "current", "old-nested"])
def test_import_any_key_layout_gives_parity(llava_source, layout, tmp_path):
    source, reference, hf_processor = llava_source
    folder = tmp_path / layout
    folder.mkdir()
    for path in source.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    state = load_file(source / "model.safetensors")
    save_file({relayout(k, layout): v for k, v in state.items()}, folder / "model.safetensors", {"format": "pt"})
    with pytest.warns(UserWarning, match="square images only"):
        model, processor = import_llava(folder)
    images = [Image.fromarray(np.full((48, 48, 3), 40 * i, dtype=np.uint8)) for i in (1, 5)]
    messages = [
        {"role": "user", "content": [{"type": "image", "image": images[0]}, {"type": "text", "text": "what color?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
        {"role": "user", "content": [{"type": "image", "image": images[1]}, {"type": "text", "text": "and this?"}]},
    ]
    ours = processor.apply_chat_template(messages, add_generation_prompt=True)
    theirs = hf_processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    with torch.no_grad():
        diff = (model(**ours).logits - reference(**ours).logits).abs().max().item()
    print(f"import {layout}: max abs logit diff {diff:.3g}")
    assert diff <= TOLERANCE
    assert (
        model.generate(**ours, max_new_tokens=NEW_TOKENS, do_sample=False).tolist()
        == reference.generate(**ours, max_new_tokens=NEW_TOKENS, do_sample=False).tolist()
    )
    model.train()(**ours, labels=ours["input_ids"]).loss.backward()  # training can continue from the import
    assert model.projectors["image"].linear_1.weight.grad.abs().sum() > 0


def test_import_then_export_round_trips_the_weights(llava_source, tmp_path):
    source, _, _ = llava_source
    with pytest.warns(UserWarning):
        model, processor = import_llava(source)
    export_llava(model, tmp_path, processor=processor)
    before = {relayout(k, "old-nested"): v for k, v in load_file(source / "model.safetensors").items()}
    after = load_file(tmp_path / "model.safetensors")
    assert set(before) == set(after)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_import_rejects_a_folder_that_is_not_llava(tmp_path, tok):
    model, processor = build(tok, *CASES["clip-llama"])
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'omnifuse', not 'llava'"):
        import_llava(Path(tmp_path))


def test_a_grounding_head_is_left_out_of_the_export(tok, prompts, tmp_path):
    model, processor = build(tok, *CASES["clip-llama"])
    model.enable_grounding({"layer": 1, "bins": 4})
    assert check_llava_compatible(model) == []
    inputs = processor.apply_chat_template(prompts["two-images"], add_generation_prompt=True)
    with torch.no_grad():
        expected = model(**inputs).logits
    export_llava(model, tmp_path, processor=processor)
    weights = load_file(tmp_path / "model.safetensors")
    assert not any("grounding" in key for key in weights)
    llava = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert (llava(**inputs).logits - expected).abs().max().item() <= TOLERANCE
