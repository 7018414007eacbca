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


def save_tiny_model(folder: Path) -> Path:
    """A tiny Llama + SigLIP + Whisper model (512 positions) saved with its processor."""
    tok = build_bpe_tokenizer(["what color is the circle? red blue green"], vocab_size=300)
    torch.manual_seed(0)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config(vocab_size=len(tok)), image=tiny_vision_config(), audio=tiny_audio_config(), tokenizer=tok
    )
    model.save_pretrained(folder)
    OmniProcessor.from_model_config(model.config, tok).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


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
