"""A GGUF causal LM (quantized) -> a plain float32 transformers folder (config, safetensors, tokenizer).

transformers' GGUF loader (needs the pure-Python `gguf` package) dequantizes the tensors and rebuilds the
tokenizer with its chat template; the dequantized weights are then moved into an ordinary model, because a
GGUF-loaded model refuses `save_pretrained`.

Example:
    >>> convert_gguf_causal_lm({"model.gguf": Path("SmolLM2.Q4_1.gguf")}, Path("out"))   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch

from omnifuse.pretrained.verify import PretrainedFormatError


def _plain_copy(quantized_loaded: torch.nn.Module) -> torch.nn.Module:
    """The same architecture without GGUF's quantization marker, holding the dequantized weights."""
    from transformers import AutoModelForCausalLM

    config = quantized_loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized_loaded.state_dict())
    plain.generation_config = quantized_loaded.generation_config
    return plain


def convert_gguf_causal_lm(files: dict[str, Path], out_dir: Path) -> None:
    """Dequantize the one `.gguf` file in `files` and write a transformers folder to `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = next((path for path in files.values() if path.suffix == ".gguf"), None)
    if gguf_path is None:
        raise PretrainedFormatError(f"no .gguf file among {sorted(files)}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except (ValueError, KeyError) as err:
        raise PretrainedFormatError(f"{gguf_path.name}: transformers cannot read this GGUF file ({err})") from err
    _plain_copy(loaded).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


__all__ = ["convert_gguf_causal_lm"]
