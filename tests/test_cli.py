import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.cli import main
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tok = build_bpe_tokenizer(["what color is the circle? red blue"], vocab_size=300)
    torch.manual_seed(0)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config(vocab_size=len(tok)), image=tiny_vision_config(), audio=tiny_audio_config(), tokenizer=tok
    )
    model.save_pretrained(folder)
    OmniProcessor.from_model_config(model.config, tok).save_pretrained(folder)
    return folder


def test_console_script_synth_writes_the_benchmark(tmp_path):
    exe = Path(sys.executable).parent / "omnifuse"  # the console script installed beside this interpreter
    assert exe.exists()
    done = subprocess.run(
        [exe, "synth", "--out", str(tmp_path), "--n", "6", "--modalities", "image,text"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert summary["task"] == "synth" and summary["records"] == 6
    assert len((tmp_path / "data.jsonl").read_text().splitlines()) == 6


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "omnifuse synth: --n must be positive, got 0"
    assert main(["eval", "--model", str(tmp_path / "nope"), "--data", "x.jsonl"]) == 2
    assert "nope is not a folder" in capsys.readouterr().err


def test_eval_and_chat_on_a_saved_model(saved_model, tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n", "8", "--modalities", "image,audio"]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(saved_model), "--data", str(tmp_path / "data.jsonl")]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["task"] == "eval" and 0.0 <= result["accuracy"] <= 1.0
    # 8 records over the 9 image+audio types: balanced, so 8 distinct types with one record each
    assert len(result["per_question"]) == 8 and all(
        k.split("_")[0] in ("image", "audio") for k in result["per_question"]
    )
    image = next((tmp_path / "media").glob("*.png"))
    assert main(["chat", "--model", str(saved_model), "--image", str(image), "--max-new-tokens", "3", "color?"]) == 0
    assert main(["chat", "--model", str(saved_model), "--image", str(tmp_path / "missing.png"), "color?"]) == 2


def test_export_of_an_incompatible_model_lists_reasons(saved_model, tmp_path, capsys):
    assert main(["export", "--model", str(saved_model), "--format", "llava", "--out", str(tmp_path / "x")]) == 2
    assert "audio" in capsys.readouterr().err
    assert main(["export", "--model", str(saved_model), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2


def test_user_errors_of_every_command_exit_2_with_a_json_error_line(tmp_path, capsys):
    llava = tmp_path / "llava"
    llava.mkdir()
    (llava / "config.json").write_text(json.dumps({"model_type": "llava"}))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {{from_pretrained: {llava}}}\ndata: {{train: {tmp_path / 'd.jsonl'}}}\n"
        f"stages: [{{name: sft, max_steps: 1}}]\noutput_dir: {tmp_path / 'out'}\n"
    )
    record = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    (tmp_path / "d.jsonl").write_text(json.dumps(record) + "\n")
    cases = {
        ("eval", "--model", str(llava), "--data", "x.jsonl"): "import_llava",
        ("chat", "--model", str(llava), "hi"): "import_llava",
        ("export", "--model", str(llava), "--out", str(tmp_path / "e")): "import_llava",
        ("import", "--model", str(tmp_path), "--out", str(tmp_path / "i")): "no config.json",
        ("import", "--model", str(llava), "--out", str(tmp_path / "i")): "no loadable LLaVA processor",
        ("import", "--model", str(llava), "--out", str(llava)): "would write over the model it reads",
        ("train", str(recipe)): "import_llava",
        ("train", str(tmp_path / "missing.yaml")): "cannot read the recipe",
    }
    for argv, reason in cases.items():
        assert main(list(argv)) == 2, argv
        captured = capsys.readouterr()
        assert len(captured.err.strip().splitlines()) == 1 and reason in captured.err, (argv, captured.err)
        error = last_json(captured.out)
        assert error["task"] == argv[0] and reason in error["error"]


def test_from_pretrained_refuses_a_folder_of_another_model_type(tmp_path):
    from omnifuse.errors import FolderError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(FolderError, match="holds a 'llava' model, not an omnifuse model; import it with .*import_"):
        OmniForConditionalGeneration.from_pretrained(tmp_path)
