"""Training stages end to end on a tiny model: what each stage changes, LoRA, outputs, real-folder loading."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, SiglipVisionModel

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.data.sources import MessagesDataset
from omnifuse.modeling.presets import tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer
from omnifuse.training.build import build_model, corpus_texts
from omnifuse.training.checkpoint import read_state
from omnifuse.training.lora import load_with_adapter, lora_target_names
from omnifuse.training.recipe import RecipeError, apply_override, load_recipe, validate_recipe
from omnifuse.training.trainer import main as trainer_main
from omnifuse.training.trainer import train

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
ALIGN_STEPS, SFT_STEPS = 2, 10


@pytest.fixture(scope="module")
def align_sft(tiny_model, bench, tmp_path_factory):
    """align (projectors) then sft (projectors + full LM), with an eval pass every 5 steps."""
    recipe = validate_recipe(
        {
            "model": tiny_model,
            "data": {"train": str(bench), "eval": str(bench), "max_length": 128},
            "stages": [
                {"name": "align", "max_steps": ALIGN_STEPS, "batch_size": 8, "lr": {"projectors": 3e-3}},
                {
                    "name": "sft",
                    "max_steps": SFT_STEPS,
                    "batch_size": 8,
                    "warmup_ratio": 0.0,
                    "lr": {"projectors": 3e-3, "language_model": 1e-2},
                    "eval_every": 5,
                },
            ],
            "output_dir": str(tmp_path_factory.mktemp("align_sft")),
            "checkpoints": {"every": 1000, "keep": 5},
        }
    )
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        result = train(recipe)
    return recipe, result, stderr.getvalue()


def initial_model(recipe) -> OmniForConditionalGeneration:
    """The model `train` starts from: built with the same seed, so bit-identical."""
    set_seed(recipe.seed)
    model, _ = build_model(recipe.model, MessagesDataset.from_path(recipe.data.train).records)
    return model


def changed(a: dict, b: dict, prefix: str) -> list[str]:
    return [k for k in a if k.startswith(prefix) and not torch.equal(a[k], b[k])]


def test_align_changes_only_projectors_and_sft_leaves_encoders_identical(align_sft):
    recipe, _, _ = align_sft
    start = initial_model(recipe).state_dict()
    after_align = load_file(Path(recipe.output_dir) / "checkpoints" / f"step-{ALIGN_STEPS}" / "model.safetensors")
    final = OmniForConditionalGeneration.from_pretrained(recipe.output_dir).state_dict()
    projectors = [k for k in start if k.startswith("projectors.")]
    assert sorted(changed(start, after_align, "projectors.")) == sorted(projectors)
    assert changed(start, after_align, "encoders.") == [] and changed(start, after_align, "language_model.") == []
    assert changed(after_align, final, "encoders.") == []
    assert len(changed(after_align, final, "language_model.")) > 10
    assert changed(after_align, final, "projectors.")


def test_each_stage_logs_its_trainable_parameters_per_part(align_sft):
    recipe, _, stderr = align_sft
    counts = initial_model(recipe).parameter_counts()
    proj, enc, lm = (counts[p]["total"] for p in ("projector.image", "encoder.image", "language_model"))
    assert f"stage 1/2 align: training {proj:,} parameters: projector.image {proj:,}/{proj:,}" in stderr
    assert f"frozen: encoder.image {enc:,}, language_model {lm:,}" in stderr
    assert f"stage 2/2 sft: training {proj + lm:,} parameters: projector.image {proj:,}/{proj:,}, " in stderr
    assert f"language_model {lm:,}/{lm:,} | frozen: encoder.image {enc:,}" in stderr


def test_loss_decreases_on_a_tiny_dataset(align_sft):
    recipe, result, _ = align_sft
    history = read_state(Path(recipe.output_dir) / "checkpoints" / f"step-{ALIGN_STEPS + SFT_STEPS}").history
    losses = [loss for _, loss in history]
    assert len(losses) == ALIGN_STEPS + SFT_STEPS == result["steps"]
    first, last = sum(losses[ALIGN_STEPS : ALIGN_STEPS + 2]) / 2, sum(losses[-2:]) / 2
    print(f"sft loss: first {first:.3f}, last {last:.3f}")
    assert last < first - 1.0
    assert result["final_loss"] == pytest.approx(losses[-1])


def test_run_writes_model_processor_curve_and_tensorboard(align_sft):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe, result, _ = align_sft
    out = Path(recipe.output_dir)
    assert result == {"task": "train", "steps": 12, "final_loss": result["final_loss"], "output_dir": str(out)}
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    processor = OmniProcessor.from_pretrained(out)
    assert (
        processor.specs["image"].placeholder_token_id
        == json.loads((out / "config.json").read_text())["modalities"]["image"]["placeholder_token_id"]
    )
    events = EventAccumulator(str(out / "runs")).Reload()
    assert len(events.Scalars("train/loss")) == 12
    assert [e.step for e in events.Scalars("eval/loss")] == [ALIGN_STEPS + 5, ALIGN_STEPS + 10]
    assert {"train/lr/projectors", "train/lr/language_model", "train/tokens_per_s"} <= set(events.Tags()["scalars"])


@pytest.fixture(scope="module")
def lora_run(align_sft, bench, tmp_path_factory):
    """recipes/lora_sft.yaml on the align+sft output, shortened."""
    base = align_sft[0].output_dir
    overrides = [
        f"model.from_pretrained={base}",
        f"data.train={bench}",
        "data.eval=null",
        f"output_dir={tmp_path_factory.mktemp('lora')}",
        "stages.0.max_steps=2",
        "stages.0.batch_size=8",
        "stages.0.eval_every=null",
        "stages.0.lr.language_model=1e-2",
        "stages.0.lora={r: 4, alpha: 8, dropout: 0.0}",
    ]
    recipe = load_recipe(RECIPES / "lora_sft.yaml", overrides)
    with contextlib.redirect_stderr(io.StringIO()):
        train(recipe)
    return base, recipe


def test_lora_adapts_only_the_lm_and_the_merged_model_equals_base_plus_adapter(lora_run, bench):
    base, recipe = lora_run
    out = Path(recipe.output_dir)
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    targets = sorted(config["target_modules"])
    assert len(targets) == 8 and all(t.startswith("language_model.model.layers.") for t in targets)
    assert not [t for t in targets if "encoder" in t]
    assert config["modules_to_save"] == ["projectors.image"]
    assert config["base_model_name_or_path"] == str(Path(base).resolve())
    merged = OmniForConditionalGeneration.from_pretrained(out).eval()
    adapted = load_with_adapter(out / "adapter").eval()
    processor = OmniProcessor.from_pretrained(out)
    records = MessagesDataset.from_path(bench).records[:4]
    inputs = processor.apply_chat_template([r.messages for r in records], return_dict=True)
    with torch.no_grad():
        diff = (merged(**inputs).logits - adapted(**inputs).logits).abs().max().item()
    print(f"merged vs base+adapter logits: max abs diff {diff:.2e}")
    assert diff < 1e-5
    start, end = OmniForConditionalGeneration.from_pretrained(base).state_dict(), merged.state_dict()
    assert changed(start, end, "encoders.") == []
    assert any(k.endswith("q_proj.weight") for k in changed(start, end, "language_model."))
    assert not any(k.endswith("mlp.up_proj.weight") for k in changed(start, end, "language_model."))


def test_lora_targets_skip_encoder_layers_with_the_same_names():
    torch.manual_seed(0)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=64), image=tiny_vision_config("siglip_vision_model")
    )
    encoder_q = [n for n, _ in model.named_modules() if n.startswith("encoders.") and n.endswith("q_proj")]
    assert encoder_q  # SigLIP has q_proj layers too: matching by bare name would adapt them
    names = lora_target_names(model, ["q_proj", "v_proj", "out_proj"])
    assert len(names) == 4 and all(n.startswith("language_model.") for n in names)
    with pytest.raises(RecipeError, match=r"lora.target_modules: none of \['fc1'\].*'o_proj'"):
        lora_target_names(model, ["fc1"])  # fc1 exists, but only in the encoder


def make_real_like_folders(root: Path, bench: Path) -> tuple[Path, Path]:
    """Tiny stand-ins for /models/SmolLM2-135M-Instruct and /models/siglip-base-patch16-224."""
    records = MessagesDataset.from_path(bench).records
    tokenizer = build_bpe_tokenizer(corpus_texts(records), vocab_size=300)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # string-only, like SmolLM2's
    text_dir, image_dir = root / "SmolLM2", root / "siglip"
    config = tiny_text_config("llama", vocab_size=len(tokenizer))
    config.eos_token_id = tokenizer.eos_token_id  # the preset's 2 is <|im_start|> in this tokenizer
    AutoModelForCausalLM.from_config(config).save_pretrained(text_dir)
    tokenizer.save_pretrained(text_dir)
    SiglipVisionModel(tiny_vision_config("siglip_vision_model")).save_pretrained(image_dir)
    return text_dir, image_dir


def test_real_checkpoint_recipe_loads_local_folders_and_trains(bench, tmp_path):
    text_dir, image_dir = make_real_like_folders(tmp_path, bench)
    overrides = [f"model.text={text_dir}", f"model.image={image_dir}", f"data.train={bench}", "data.eval=null"]
    overrides += [f"output_dir={tmp_path / 'out'}", "data.max_length=256", "data.num_workers=0"]
    overrides += ["stages.0.max_steps=1", "stages.1.max_steps=1", "stages.1.grad_accum=1", "stages.1.eval_every=null"]
    recipe = load_recipe(RECIPES / "siglip_smollm2.yaml", overrides)
    model, processor = build_model(recipe.model, MessagesDataset.from_path(bench).records)
    lm = AutoModelForCausalLM.from_pretrained(text_dir)
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(model.language_model.state_dict()[q_proj], lm.state_dict()[q_proj])
    vision = SiglipVisionModel.from_pretrained(image_dir).state_dict()
    assert all(torch.equal(v, model.encoders["image"].model.state_dict()[k]) for k, v in vision.items())
    assert model.config.modality_specs()["image"].feature_layer == -2
    sample = processor.encode_conversation(MessagesDataset.from_path(bench).records[0].messages)
    assert sample.input_ids.count(model.config.modality_specs()["image"].placeholder_token_id) == 16
    with contextlib.redirect_stderr(io.StringIO()):
        result = train(recipe)  # align + LoRA sft, packed rows
    assert result["steps"] == 2 and result["final_loss"] > 0
    adapted = load_with_adapter(tmp_path / "out" / "adapter")  # base saved beside it: no folder held it
    assert len(adapted.peft_config["default"].target_modules) == 2 * 7


@pytest.mark.parametrize(
    ("override", "path", "fragment"),
    [
        ("model.text=/no/such/folder", "model.text", "is not a folder"),
        ("model.tokenizer=null", "model.tokenizer", "a text model given as a config has no tokenizer"),
        ("model.image={hidden_size: 32}", "model.image", "needs `model_type`"),
    ],
)
def test_unusable_components_are_recipe_errors(tiny_model, bench, tmp_path, override, path, fragment):
    stages = [{"name": "align", "max_steps": 1}]
    data = {"model": copy.deepcopy(tiny_model), "data": {"train": str(bench)}, "stages": stages}
    data["output_dir"] = str(tmp_path)
    apply_override(data, override)
    recipe = validate_recipe(data)
    with pytest.raises(RecipeError) as caught:
        build_model(recipe.model, MessagesDataset.from_path(bench).records)
    assert caught.value.path == path and fragment in str(caught.value)


def test_a_corrupt_media_file_ends_the_run_with_exit_code_2(tiny_model, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    messages = [
        {"role": "user", "content": [{"type": "image", "path": "broken.png"}, {"type": "text", "text": "Color?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
    ]
    (tmp_path / "data.jsonl").write_text(json.dumps({"messages": messages}) + "\n")
    recipe = {"model": tiny_model, "data": {"train": str(tmp_path / "data.jsonl")}, "output_dir": str(tmp_path / "o")}
    recipe["stages"] = [{"name": "align", "max_steps": 1, "batch_size": 1}]
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))
    assert trainer_main([str(tmp_path / "recipe.yaml")]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "data.jsonl:1" in err and "image" in err


def test_generated_benchmark_trains_and_resumes_on_the_same_records(tiny_model, tmp_path):
    """`data.generate` with an adaptive mix: records built on demand (so a resumed run sees the same ones, the
    mix's state restored), and a tokenizer that knows the chat roles."""
    import shutil

    import numpy as np

    recipe = validate_recipe(
        {
            "model": tiny_model,
            "data": {"generate": {"records": 4 * 6, "modalities": "image,text", "seed": 1, "adapt_every": 2}},
            "stages": [{"name": "full", "max_steps": 6, "batch_size": 4, "lr": {"language_model": 1e-3}}],
            "output_dir": str(tmp_path / "out"),
            "checkpoints": {"every": 3, "keep": 5},
        }
    )
    with contextlib.redirect_stderr(io.StringIO()):
        assert train(recipe)["steps"] == 6
    final = tmp_path / "out" / "checkpoints" / "step-6"
    state = read_state(final)
    assert state.train_samples == 24 and state.epoch == 1
    assert set(state.data_mixture) == {"image_color", "image_shape", "image_count", "image_position", "image_caption",
                                       "text_arith"}  # fmt: skip
    shutil.rmtree(final)  # as if the run had stopped after step 3
    with contextlib.redirect_stderr(io.StringIO()):
        assert train(recipe)["steps"] == 6
    again = read_state(final)  # the mix restored at step 3 draws the same question types
    assert np.allclose([x for _, x in again.history], [x for _, x in state.history], atol=1e-6)
    assert again.data_mixture == state.data_mixture
    tokenizer = OmniProcessor.from_pretrained(tmp_path / "out").tokenizer
    assert tokenizer.tokenize("assistant") == ["assistant"] and tokenizer.tokenize("user") == ["user"]
