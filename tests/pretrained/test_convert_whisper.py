"""CTranslate2 reading and the Whisper conversion, on a tiny random Whisper written in CTranslate2's layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from omnifuse.pretrained.convert_whisper import whisper_config_dict, whisper_state_dict
from omnifuse.pretrained.ct2 import read_ct2_model
from omnifuse.pretrained.verify import PretrainedFormatError

# Real Whisper vocabularies put these near 50257; the tiny one has 100 tokens.
TINY_SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1, "decoder_start_token_id": 2}
DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}


def _string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return struct.pack("<H", len(data)) + data


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None) -> None:
    """CTranslate2 binary version 6, the layout `read_ct2_model` reads."""
    out = [struct.pack("<I", 6), _string("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, array in variables.items():
        array = np.asarray(array).copy(order="C")  # ascontiguousarray would make 0-d arrays 1-d
        out += [_string(name), struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}I", *array.shape)]
        out += [struct.pack("<B", DTYPE_IDS[array.dtype]), struct.pack("<I", array.nbytes), array.tobytes()]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    out += [_string(alias) + _string(target) for alias, target in aliases.items()]
    path.write_bytes(b"".join(out))


def _ct2_attention(sd: dict, src: str, dst: str, fused: list[str], out: dict) -> None:
    """transformers' separate projections -> one fused CTranslate2 linear (k gets a zero bias)."""
    weights = [sd[f"{src}.{name}.weight"] for name in fused]
    biases = [sd.get(f"{src}.{name}.bias", torch.zeros(weights[0].shape[0])) for name in fused]
    out[f"{dst}/weight"], out[f"{dst}/bias"] = torch.cat(weights), torch.cat(biases)


def _ct2_layer(sd: dict, side: str, i: int, out: dict) -> None:
    src, dst = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
    pairs = {"self_attn_layer_norm": "self_attention/layer_norm", "final_layer_norm": "ffn/layer_norm"}
    pairs |= {"self_attn.out_proj": "self_attention/linear_1", "fc1": "ffn/linear_0", "fc2": "ffn/linear_1"}
    _ct2_attention(sd, f"{src}.self_attn", f"{dst}/self_attention/linear_0", ["q_proj", "k_proj", "v_proj"], out)
    if side == "decoder":
        pairs |= {"encoder_attn_layer_norm": "attention/layer_norm", "encoder_attn.q_proj": "attention/linear_0"}
        pairs |= {"encoder_attn.out_proj": "attention/linear_2"}
        _ct2_attention(sd, f"{src}.encoder_attn", f"{dst}/attention/linear_1", ["k_proj", "v_proj"], out)
    for hf, ct2 in pairs.items():
        is_norm = "layer_norm" in hf
        out[f"{dst}/{ct2}/{'gamma' if is_norm else 'weight'}"] = sd[f"{src}.{hf}.weight"]
        out[f"{dst}/{ct2}/{'beta' if is_norm else 'bias'}"] = sd[f"{src}.{hf}.bias"]


def to_ct2_variables(model: WhisperForConditionalGeneration) -> dict[str, np.ndarray]:
    sd, config, out = model.state_dict(), model.config, {}
    for conv in ("conv1", "conv2"):
        out[f"encoder/{conv}/weight"], out[f"encoder/{conv}/bias"] = (
            sd[f"model.encoder.{conv}.{k}"] for k in ("weight", "bias")
        )
    for side in ("encoder", "decoder"):
        out[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
        out[f"{side}/layer_norm/gamma"], out[f"{side}/layer_norm/beta"] = (
            sd[f"model.{side}.layer_norm.{k}"] for k in ("weight", "bias")
        )
        for i in range(getattr(config, f"{side}_layers")):
            _ct2_layer(sd, side, i, out)
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    arrays = {name: value.detach().numpy().astype(np.float16) for name, value in out.items()}
    arrays["encoder/num_heads"] = np.array(config.encoder_attention_heads, dtype=np.int16)
    arrays["decoder/num_heads"] = np.array(config.decoder_attention_heads, dtype=np.int16)
    return arrays


@pytest.fixture(scope="module")
def tiny_whisper() -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=100, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8,
        max_source_positions=10, max_target_positions=12, **TINY_SPECIAL_IDS,
    )  # fmt: skip
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():  # fp16-exact weights, so the round trip can be compared exactly
        for param in model.parameters():
            param.copy_(param.half().float())
    return model.eval()


def test_reader_returns_every_variable_and_resolves_aliases(tmp_path):
    variables = {"a/weight": np.arange(6, dtype=np.float16).reshape(2, 3), "n": np.array(6, dtype=np.int16)}
    write_ct2(tmp_path / "model.bin", variables, aliases={"b/weight": "a/weight"})
    read = read_ct2_model(tmp_path / "model.bin")
    assert read["a/weight"].shape == (2, 3) and read["a/weight"][1, 2] == 5 and int(read["n"]) == 6
    assert read["b/weight"] is read["a/weight"]


def test_truncated_or_foreign_files_are_format_errors(tmp_path):
    write_ct2(tmp_path / "model.bin", {"a": np.ones(100, dtype=np.float32)})
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:200])
    with pytest.raises(PretrainedFormatError, match="truncated CTranslate2 file"):
        read_ct2_model(tmp_path / "cut.bin")
    (tmp_path / "v5.bin").write_bytes(struct.pack("<I", 5) + data[4:])
    with pytest.raises(PretrainedFormatError, match="binary version 5, expected 6"):
        read_ct2_model(tmp_path / "v5.bin")


def test_fused_projections_split_back_into_the_same_model(tiny_whisper, tmp_path):
    write_ct2(tmp_path / "model.bin", to_ct2_variables(tiny_whisper))
    variables = read_ct2_model(tmp_path / "model.bin")
    config = WhisperConfig(**whisper_config_dict(variables, {}) | TINY_SPECIAL_IDS)
    assert (config.encoder_layers, config.decoder_attention_heads, config.num_mel_bins) == (2, 2, 8)
    rebuilt = WhisperForConditionalGeneration(config).eval()
    missing, unexpected = rebuilt.load_state_dict(whisper_state_dict(variables), strict=False)
    assert missing == ["proj_out.weight"] and unexpected == []  # proj_out is tied to the token embeddings
    for name, value in tiny_whisper.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], value), name
    features, decoder_ids = torch.randn(1, 8, 20), torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        expected = tiny_whisper(input_features=features, decoder_input_ids=decoder_ids).logits
        assert torch.allclose(rebuilt(input_features=features, decoder_input_ids=decoder_ids).logits, expected)
