"""Recipes: schema, unknown-key suggestions, dotted overrides, bad values, and the CLI's exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from omnifuse.training.recipe import LoraSection, RecipeError, apply_override, load_recipe, validate_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def minimal() -> dict:
    return {
        "model": {"text": {"model_type": "llama"}, "tokenizer": {"build": {"vocab_size": 400}}},
        "data": {"train": "train.jsonl"},
        "stages": [{"name": "align", "max_steps": 3}, {"name": "sft", "epochs": 1}],
        "output_dir": "out",
    }


def error_of(data: dict, overrides: tuple[str, ...] = ()) -> RecipeError:
    for override in overrides:
        apply_override(data, override)
    with pytest.raises(RecipeError) as caught:
        validate_recipe(data, "r.yaml")
    return caught.value


@pytest.mark.parametrize("name", ["benchmark_align_sft", "lora_sft", "siglip_smollm2"])
def test_example_recipes_are_valid(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.stages and recipe.output_dir.startswith("runs/")
    if name == "siglip_smollm2":
        assert recipe.model.text == "/models/SmolLM2-135M-Instruct"
        assert recipe.model.image == "/models/siglip-base-patch16-224"
        assert recipe.stages[1].lora is not None


def test_defaults_fill_in():
    recipe = validate_recipe(minimal())
    stage = recipe.stages[0]
    assert (stage.batch_size, stage.grad_accum, stage.lora, recipe.seed) == (8, 1, None, 0)
    assert recipe.resolved_dtype(on_accelerator=False) == "float32"
    assert recipe.resolved_dtype(on_accelerator=True) == "bfloat16"
    assert recipe.model.tokenizer.build.vocab_size == 400


@pytest.mark.parametrize(
    ("path", "value", "suggested"),
    [
        ("stages.0.lrr", 1, "lr"),
        ("stages.1.lr.projector", 1e-3, "projectors"),
        ("model.tokenizer.build.vocab", 300, "vocab_size"),
        ("ouput_dir", "x", "output_dir"),
        ("data.max_len", 10, "max_length"),
    ],
)
def test_unknown_key_names_its_path_and_the_closest_valid_key(path, value, suggested):
    err = error_of(minimal(), (f"{path}={value}",))
    assert err.path == path
    assert f"did you mean {suggested!r}?" in str(err)
    assert str(err).startswith(f"r.yaml: {path}: unknown key")


def test_unknown_key_without_a_close_match_lists_the_valid_keys():
    err = error_of(minimal(), ("stages.0.zzz=1",))
    assert "did you mean" not in str(err) and "valid keys here: name, epochs, max_steps" in str(err)


def test_overrides_set_nested_values_with_yaml_types():
    data = minimal()
    for override in [
        "stages.0.lr.projectors=1e-3",
        "output_dir=runs/other",
        "stages.1.lora={r: 4, target_modules: [q_proj]}",
        "data.packing=true",
        "data.max_length=128",
        "stages.1.max_steps=5",
        "model.image=null",
    ]:
        apply_override(data, override)
    recipe = validate_recipe(data)
    assert recipe.stages[0].lr.projectors == pytest.approx(1e-3)
    assert recipe.output_dir == "runs/other"
    assert recipe.stages[1].lora == LoraSection(r=4, target_modules=["q_proj"])
    assert (recipe.data.packing, recipe.data.max_length, recipe.stages[1].max_steps) == (True, 128, 5)
    assert recipe.model.image is None


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("stages.0.lr.projectors", "is not key=value"),
        ("stages.5.name=sft", "stages.5: no list item '5' (the list has 2)"),
        ("data.train.path=x", "data.train.path: cannot set a key inside a str"),
    ],
)
def test_bad_overrides_are_recipe_errors(override, fragment):
    with pytest.raises(RecipeError) as caught:
        apply_override(minimal(), override)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("override", "path", "fragment"),
    [
        ("stages.0.batch_size=eight", "stages.0.batch_size", "valid integer"),
        ("stages.0.name=pretrain", "stages.0.name", "'align', 'sft', 'full' or 'contrastive'"),
        ("stages.0.warmup_ratio=1.5", "stages.0.warmup_ratio", "less than 1"),
        ("stages.1.lora.r=0", "stages.1.lora.r", "greater than or equal to 1"),
        ("dtype=float64", "dtype", "'auto', 'float32' or 'bfloat16'"),
        ("data.packing=true", "data", "packing needs max_length"),
    ],
)
def test_bad_values_name_the_key_and_the_problem(override, path, fragment):
    err = error_of(minimal(), (override,))
    assert err.path == path
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("override", "path", "fragment"),
    [
        ("stages.0.eval_every=5", "stages.0.eval_every", "needs an eval set; set data.eval"),
        ("model.from_pretrained=some/folder", "model", "remove ['text', 'tokenizer']"),
        ("stages.0.lora={r: 4}", "stages.0", "align trains the projectors only"),
        ("stages.0.max_steps=null", "stages.0", "give `epochs` or `max_steps`"),
        ("model.tokenizer={path: tok, build: {vocab_size: 400}}", "model.tokenizer", "exactly one"),
        ("data.generate={records: 10}", "data", "exactly one of `train`"),
        ("data={generate: {records: 10}, cache_media: true}", "data", "never repeats one"),
        ("data={generate: {records: 10, modalities: smell}}", "data.generate", "unknown or empty modalities"),
        ("data={generate: {records: 0}}", "data.generate.records", "greater than or equal to 1"),
        ("data={generate: {records: 9, adapt_every: 5}, num_workers: 1}", "data", "adapt_every needs num_workers: 0"),
    ],
)
def test_inconsistent_sections_are_reported_where_they_are(override, path, fragment):
    err = error_of(minimal(), (override,))
    assert err.path == path
    assert fragment in str(err)


def test_yaml_syntax_error_reports_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  text: [unclosed\noutput_dir: x\n")
    with pytest.raises(RecipeError, match=r"bad.yaml: line \d+: invalid YAML"):
        load_recipe(path)


def test_missing_recipe_file_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="cannot read the recipe"):
        load_recipe(tmp_path / "nope.yaml")


def test_cli_exits_with_2_and_a_one_line_reason(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text((RECIPES / "benchmark_align_sft.yaml").read_text())
    run = subprocess.run(
        [sys.executable, "-m", "omnifuse.training.trainer", str(path), "stages.0.bach_size=4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "stages.0.bach_size: unknown key; did you mean 'batch_size'?" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_generated_data_and_a_contrastive_stage_are_refused_together():
    err = error_of(minimal(), ("data={generate: {records: 10}}", "stages=[{name: contrastive, max_steps: 2}]"))
    assert "contrastive stage trains on (medium, caption) pairs" in str(err)


def test_generated_data_is_a_valid_data_section():
    recipe = validate_recipe({**minimal(), "data": {"generate": {"records": 64, "modalities": "image,text"}}}, "r.yaml")
    assert recipe.data.train is None and recipe.data.generate.records == 64 and recipe.data.generate.seed == 0


def test_example_recipe_switches_to_generated_data_by_override():
    overrides = ["data.train=null", "data.generate={records: 32000, adapt_every: 200}"]
    recipe = load_recipe(RECIPES / "benchmark_align_sft.yaml", overrides)
    assert recipe.data.train is None and recipe.data.generate.adapt_every == 200
    assert recipe.data.eval  # the written held-out set still measures it
