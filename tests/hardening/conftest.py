"""Shared by the hardening tests: a saved tiny image + audio model folder and a small eval dataset on disk."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer


def save_tiny_model(folder: Path, audio: bool = True) -> Path:
    """A tiny Llama + SigLIP (+ Whisper) model (512 positions) saved with its processor."""
    tok = build_bpe_tokenizer(["what color is the circle? red blue green"], vocab_size=300)
    torch.manual_seed(0)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config(vocab_size=len(tok)),
        image=tiny_vision_config(),
        audio=tiny_audio_config() if audio else None,
        tokenizer=tok,
    )
    model.save_pretrained(folder)
    OmniProcessor.from_model_config(model.config, tok).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def image_model_dir(tmp_path_factory) -> Path:
    """An image-only tiny model: what `omnifuse export --format llava` accepts."""
    return save_tiny_model(tmp_path_factory.mktemp("image_model"), audio=False)


def record(question: str, answer: str, media: list[dict] | None = None, **extra) -> dict:
    """One messages-JSONL record: a user turn (media parts then text) and the reference answer."""
    content = [*(media or []), {"type": "text", "text": question}]
    return {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": answer}], **extra}


def write_jsonl(path: Path, records: list) -> Path:
    """Write records (dicts, or raw strings written as they are) one per line."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_png(path: Path, color=(255, 0, 0)) -> Path:
    Image.fromarray(np.full((32, 32, 3), color, np.uint8)).save(path)
    return path


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


TINY_RECIPE_MODEL = {
    "text": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512},
    "image": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
    "tokenizer": {"build": {"vocab_size": 300}},
}  # fmt: skip


@pytest.fixture(scope="session")
def bench(tmp_path_factory) -> Path:
    """12 image + text records of the built-in benchmark."""
    from omnifuse.benchmark.generate import write_benchmark

    folder = tmp_path_factory.mktemp("bench")
    write_benchmark(folder, n=12, seed=0, modalities=("image", "text"))
    return folder / "data.jsonl"


def write_recipe(path: Path, data: Path, output_dir: Path, **changes) -> Path:
    """A one-stage align recipe on the tiny model (2 steps, a checkpoint after each), with top-level changes."""
    import copy

    import yaml

    recipe = {
        "model": copy.deepcopy(TINY_RECIPE_MODEL),
        "data": {"train": str(data)},
        "stages": [{"name": "align", "max_steps": 2, "batch_size": 4}],
        "output_dir": str(output_dir),
        "checkpoints": {"every": 1, "keep": 2},
    }
    recipe.update(changes)
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, dict | None]:
    """`omnifuse ARGS` in this process: exit code, stderr, and the last stdout JSON line (if any)."""
    from omnifuse.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    lines = [line for line in captured.out.strip().splitlines() if line.startswith("{")]
    return code, captured.err, json.loads(lines[-1]) if lines else None


def assert_one_line_error(code: int, err: str, summary: dict | None, *needles: str) -> None:
    """Exit 2, a final `omnifuse CMD: reason` line holding every needle, and the JSON error line."""
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("omnifuse ") and "Traceback" not in err, err[-2000:]
    for needle in needles:
        assert needle in last, last
    assert summary is not None and summary["error"] in last


def file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def finished_run(bench, tmp_path_factory) -> Path:
    """A 2-step run's output folder, with complete checkpoints step-1 and step-2."""
    from omnifuse.cli import main

    folder = tmp_path_factory.mktemp("run")
    recipe = write_recipe(folder / "recipe.yaml", bench, folder / "out")
    assert main(["train", str(recipe)]) == 0
    return folder / "out"


def resume_copy(finished_run: Path, bench: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished run and its recipe: (recipe path, the newest checkpoint folder of the copy)."""
    import shutil

    from omnifuse.training import checkpoint as ckpt

    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    return write_recipe(tmp_path / "recipe.yaml", bench, out), ckpt.latest_checkpoint(out / "checkpoints")
