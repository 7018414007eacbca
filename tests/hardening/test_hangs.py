"""Class 5: inputs that ran without bound (a YAML alias bomb, a 1 MB prompt through the Python API)."""

import time

import pytest

from omnifuse.modeling.folder import load_omni_folder
from omnifuse.safety.limits import InputLimitError
from omnifuse.safety.yaml_bounds import load_yaml_bounded

from .conftest import assert_one_line_error, run_cli, write_recipe


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A few hundred bytes of YAML that stand for width ** levels values."""
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_recipe_fails_fast(tmp_path, capsys):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(alias_bomb() + "model: {text: *l8}\n")
    assert len(recipe.read_bytes()) < 1000
    started = time.perf_counter()
    code, err, summary = run_cli(["train", recipe], capsys)
    assert_one_line_error(code, err, summary, "expands to", "over the limit of 100,000")
    assert time.perf_counter() - started < 5


def test_an_alias_bomb_in_an_override_fails_fast(bench, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", bench, tmp_path / "out")
    bomb = "{" + alias_bomb().strip().replace("\n", ", ") + "}"
    code, err, summary = run_cli(["train", recipe, f"seed={bomb}"], capsys)
    assert_one_line_error(code, err, summary, "override", "expands to")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "reason"),
    [("[" * 50_000 + "]" * 50_000, "nested too deeply"), ("a: " + "x" * (2**20 + 1), "over 1048576 characters")],
)
def test_deep_or_large_yaml_is_refused(text, reason):
    with pytest.raises(InputLimitError, match=reason):
        load_yaml_bounded(text, "recipe.yaml")


def test_a_recursive_alias_is_counted_once():
    assert load_yaml_bounded("a: &a [1, 2]\nb: *a\n", "r.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_a_1_mb_prompt_through_the_python_api_is_refused_in_seconds(model_dir):
    model, processor = load_omni_folder(model_dir)
    messages = [{"role": "user", "content": "what color is the circle? " * 38_000}]  # 988,000 characters
    started = time.perf_counter()
    with pytest.raises(InputLimitError, match=r"tokens, over the model's 512 positions"):
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True)
        model.generate(**inputs, max_new_tokens=1)
    assert time.perf_counter() - started < 10


def test_the_llava_style_call_is_bounded_too(model_dir):
    _, processor = load_omni_folder(model_dir)
    with pytest.raises(InputLimitError, match="over the model's 512 positions"):
        processor("red blue " * 100_000)
    with pytest.raises(InputLimitError, match="over the limit of 1000000"):
        processor("x" * 1_000_001)
    with pytest.raises(InputLimitError, match="not valid UTF-8"):
        processor("bad \udcff")
