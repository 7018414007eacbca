"""`omnifuse chat`: one prompt (with optional media files), the answer streamed to stdout."""

from __future__ import annotations

from pathlib import Path

from transformers import TextStreamer

from omnifuse.evaluation.dataset import load_model_folder
from omnifuse.safety.limits import check_count


def build_messages(prompt: str, media: dict[str, str | None]) -> list[dict]:
    parts = []
    for kind, path in media.items():
        if path:
            if not Path(path).exists():
                raise FileNotFoundError(f"--{kind} {path}: no such file")
            parts.append({"type": kind, "path": str(path)})
    return [{"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}]


def chat(model_dir: str | Path, prompt: str, media: dict[str, str | None], max_new_tokens: int = 64) -> str:
    check_count("max_new_tokens (--max-new-tokens)", max_new_tokens)
    model, processor = load_model_folder(model_dir)
    inputs = processor.apply_chat_template(build_messages(prompt, media), add_generation_prompt=True)
    tok = processor.tokenizer
    streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        streamer=streamer,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
