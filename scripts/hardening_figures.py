"""Time each refusal of the hardening work in-process (imports excluded) on self-made hostile inputs.

Run: PYTHONPATH=src python scripts/hardening_figures.py   (prints one line per case, then peak RSS)
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.data.sources import validate_dataset
from omnifuse.modeling.presets import tiny_text_config, tiny_vision_config
from omnifuse.processing.media import load_audio
from omnifuse.processing.tokenizer import build_bpe_tokenizer
from omnifuse.training.recipe import load_recipe


def timed(name: str, fn) -> None:
    started = time.perf_counter()
    try:
        result = fn()
        outcome = result if isinstance(result, str) else "accepted"
    except Exception as err:  # noqa: BLE001 - the figure is how fast and how it is refused
        outcome = f"{type(err).__name__}: {' '.join(str(err).split())[:80]}"
    print(f"{name}: {time.perf_counter() - started:.2f} s -> {outcome}", flush=True)


def alias_bomb(folder: Path) -> Path:
    lines = ["l0: &l0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    (folder / "bomb.yaml").write_text("\n".join(lines) + "\nmodel: {text: *l9}\n")
    return folder / "bomb.yaml"


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    timed("recipe with a YAML alias bomb (2.3e10 values)", lambda: load_recipe(alias_bomb(folder)))
    tok = build_bpe_tokenizer(["what color is the circle? red blue green"], vocab_size=300)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config(vocab_size=len(tok)), image=tiny_vision_config(), tokenizer=tok
    )
    processor = OmniProcessor.from_model_config(model.config, tok)  # 512 positions
    for label, text in [("1 MB prompt", "red blue " * 110_000), ("131 KB prompt", "what color red blue " * 6_600)]:
        messages = [{"role": "user", "content": text}]
        timed(f"{label} via apply_chat_template", lambda m=messages: processor.apply_chat_template(m))
    with wave.open(str(folder / "ch8.wav"), "wb") as handle:
        handle.setnchannels(8), handle.setsampwidth(2), handle.setframerate(16000)
        handle.writeframes((np.random.default_rng(0).standard_normal((8000, 8)) * 3000).astype(np.int16).tobytes())
    timed("8-channel WAV decode", lambda: load_audio(folder / "ch8.wav", sampling_rate=16000))
    record = {"messages": [{"role": "user", "content": "x" * 50 * 2**20}, {"role": "assistant", "content": "a"}]}
    (folder / "d.jsonl").write_text(json.dumps(record) + "\n")
    del record
    timed("dataset with one 50 MB record", lambda: validate_dataset(folder / "d.jsonl")[1].skipped[0].reason)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB (torch {torch.__version__})")


if __name__ == "__main__":
    main()
