"""CTranslate2 Whisper (`model.bin` + `tokenizer.json`) -> a transformers `WhisperForConditionalGeneration` folder.

CTranslate2 fuses the attention projections (q|k|v in self-attention, k|v in cross-attention) and gives k a
zero bias; transformers keeps them separate with no k bias, so they are split here.

Example:
    >>> convert_ct2_whisper({"model.bin": p1, "tokenizer.json": p2}, out_dir)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from omnifuse.pretrained.ct2 import read_ct2_model
from omnifuse.pretrained.verify import PretrainedFormatError

ENGLISH_ONLY_VOCAB = 51864  # multilingual checkpoints have one more token (<|nocaptions|> shifts)


def _layer_count(weights: dict[str, np.ndarray], side: str) -> int:
    return len({name.split("/")[1] for name in weights if re.match(rf"{side}/layer_\d+/", name)})


def _linear(weights: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"] = weights[f"{src}/weight"]
    if f"{src}/bias" in weights:
        out[f"{dst}.bias"] = weights[f"{src}/bias"]


def _norm(weights: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = weights[f"{src}/gamma"], weights[f"{src}/beta"]


def _split_projections(weights: dict, src: str, dst: str, names: list[str], out: dict) -> None:
    """One fused [n*d, d] projection -> n separate ones; k_proj has no bias in transformers."""
    for name, weight, bias in zip(
        names, np.split(weights[f"{src}/weight"], len(names)), np.split(weights[f"{src}/bias"], len(names))
    ):
        out[f"{dst}.{name}.weight"] = weight
        if name != "k_proj":
            out[f"{dst}.{name}.bias"] = bias


def _map_layer(weights: dict, side: str, i: int, out: dict) -> None:
    src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
    _norm(weights, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
    _split_projections(
        weights, f"{src}/self_attention/linear_0", f"{dst}.self_attn", ["q_proj", "k_proj", "v_proj"], out
    )
    _linear(weights, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", out)
    if side == "decoder":
        _norm(weights, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
        _linear(weights, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", out)
        _split_projections(weights, f"{src}/attention/linear_1", f"{dst}.encoder_attn", ["k_proj", "v_proj"], out)
        _linear(weights, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", out)
    _norm(weights, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)
    _linear(weights, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(weights, f"{src}/ffn/linear_1", f"{dst}.fc2", out)


def whisper_state_dict(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """CTranslate2 variable names -> transformers parameter names (float32 tensors)."""
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(weights, f"encoder/{conv}", f"model.encoder.{conv}", out)
    out["model.encoder.embed_positions.weight"] = weights["encoder/position_encodings/encodings"]
    out["model.decoder.embed_positions.weight"] = weights["decoder/position_encodings/encodings"]
    out["model.decoder.embed_tokens.weight"] = weights["decoder/embeddings/weight"]
    for side in ("encoder", "decoder"):
        _norm(weights, f"{side}/layer_norm", f"model.{side}.layer_norm", out)
        for i in range(_layer_count(weights, side)):
            _map_layer(weights, side, i, out)
    return {name: torch.from_numpy(np.asarray(array, dtype=np.float32).copy()) for name, array in out.items()}


def whisper_config_dict(weights: dict[str, np.ndarray], ct2_config: dict) -> dict:
    """The WhisperConfig fields a CTranslate2 file determines (sizes, heads, layers, special tokens)."""
    vocab, d_model = weights["decoder/embeddings/weight"].shape
    english_only = vocab == ENGLISH_ONLY_VOCAB
    return {
        "vocab_size": int(vocab),
        "d_model": int(d_model),
        "num_mel_bins": int(weights["encoder/conv1/weight"].shape[1]),
        "encoder_layers": _layer_count(weights, "encoder"),
        "decoder_layers": _layer_count(weights, "decoder"),
        "encoder_attention_heads": int(weights["encoder/num_heads"]),
        "decoder_attention_heads": int(weights["decoder/num_heads"]),
        "encoder_ffn_dim": int(weights["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(weights["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(weights["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(weights["decoder/position_encodings/encodings"].shape[0]),
        "suppress_tokens": ct2_config.get("suppress_ids", []),
        "begin_suppress_tokens": ct2_config.get("suppress_ids_begin", [220, 50256]),
        "decoder_start_token_id": 50257 if english_only else 50258,
        "bos_token_id": 50256 if english_only else 50257,
        "eos_token_id": 50256 if english_only else 50257,
        "pad_token_id": 50256 if english_only else 50257,
    }


def _generation_config(config, ct2_config: dict, tokenizer) -> dict:
    english_only = config.vocab_size == ENGLISH_ONLY_VOCAB
    generation = {
        "decoder_start_token_id": config.decoder_start_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "suppress_tokens": config.suppress_tokens,
        "begin_suppress_tokens": config.begin_suppress_tokens,
        "alignment_heads": ct2_config.get("alignment_heads", []),
        "no_timestamps_token_id": tokenizer.convert_tokens_to_ids("<|notimestamps|>"),
        "max_initial_timestamp_index": 50,
        "is_multilingual": not english_only,
        "max_length": config.max_target_positions,
    }
    if not english_only:
        tasks = ("transcribe", "translate")
        generation["task_to_id"] = {task: tokenizer.convert_tokens_to_ids(f"<|{task}|>") for task in tasks}
        lang_ids = ct2_config.get("lang_ids", [])
        generation["lang_to_id"] = {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids}
    return generation


def convert_ct2_whisper(files: dict[str, Path], out_dir: Path) -> None:
    """Write config, safetensors weights, tokenizer, feature extractor and generation config to `out_dir`."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    weights = read_ct2_model(files["model.bin"])
    if "decoder/embeddings/weight" not in weights:
        raise PretrainedFormatError(f"{files['model.bin']}: not a CTranslate2 Whisper model (no decoder embeddings)")
    ct2_config = json.loads(files["config.json"].read_text()) if "config.json" in files else {}
    config = WhisperConfig(**whisper_config_dict(weights, ct2_config))
    model = WhisperForConditionalGeneration(config)
    model.load_state_dict(whisper_state_dict(weights), strict=False)  # proj_out is tied to embed_tokens
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(files["tokenizer.json"]))
    # A fresh GenerationConfig: one derived from the model config is rebuilt on load, dropping lang_to_id & co.
    model.generation_config = GenerationConfig(**_generation_config(config, ct2_config, tokenizer))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)


__all__ = ["convert_ct2_whisper", "whisper_config_dict", "whisper_state_dict"]
