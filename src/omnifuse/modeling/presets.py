"""Tiny configs of real transformers families, built offline (no weights to download).

Tests and the demo use them the way transformers' own test suites do; every family goes through
the same generic code path.

Example:
    >>> text = tiny_text_config("qwen2", vocab_size=300)
    >>> image = tiny_vision_config("siglip_vision_model", image_size=32, patch_size=8)
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

TEXT_FAMILIES = ("llama", "qwen2", "phi3", "gpt2", "mistral", "gemma")
VIT_FAMILIES = ("siglip_vision_model", "clip_vision_model", "dinov2", "vit")
# Convolutional backbones: their feature maps become height x width tokens (see modeling/encoders.py).
CONV_FAMILIES = ("resnet", "convnext")
VISION_FAMILIES = VIT_FAMILIES + CONV_FAMILIES
AUDIO_FAMILIES = ("whisper", "qwen2_audio_encoder", "wav2vec2")


def _transformer(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
    }


def tiny_text_config(
    family: str = "llama",
    vocab_size: int = 128,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    **overrides,
) -> PreTrainedConfig:
    """A small causal LM config; ids 0/1/2 are pad/bos/eos so generation has valid special tokens."""
    specials = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if family == "gpt2":
        kwargs = {"n_embd": hidden, "n_layer": layers, "n_head": heads, "n_positions": 512}
    else:
        kwargs = _transformer(hidden, layers, heads) | {
            "num_key_value_heads": heads,
            "max_position_embeddings": 512,
        }
        if family == "gemma":
            kwargs["head_dim"] = hidden // heads
    return AutoConfig.for_model(family, vocab_size=vocab_size, **specials | kwargs | overrides)


def tiny_vision_config(
    family: str = "siglip_vision_model",
    image_size: int = 32,
    patch_size: int = 8,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    **overrides,
) -> PreTrainedConfig:
    """A small ViT-style encoder, or for a CONV_FAMILIES member a two-stage CNN (`layers` blocks per stage)."""
    if family in CONV_FAMILIES:
        return tiny_conv_config(family, image_size=image_size, width=hidden, depth=layers, **overrides)
    kwargs = _transformer(hidden, layers, heads) | {"image_size": image_size, "patch_size": patch_size}
    return AutoConfig.for_model(family, **kwargs | overrides)


def tiny_conv_config(family: str = "resnet", image_size: int = 32, width: int = 32, depth: int = 1, **overrides):
    """A two-stage ResNet / ConvNeXt (widths `width`, 2 * `width`). `image_size` is stored on the config
    because CNN configs have none: the processor resizes images to it.

    Example:
        >>> from omnifuse.modeling.encoders import probe_encoder
        >>> probe = probe_encoder(tiny_conv_config("resnet", image_size=32, width=16))
        >>> probe.output_length, probe.hidden_size  # a 4 x 4 map of 32 channels
        (16, 32)
    """
    kwargs: dict[str, Any] = {"hidden_sizes": [width, 2 * width], "depths": [depth, depth], "image_size": image_size}
    if family == "resnet":
        kwargs |= {"embedding_size": width, "layer_type": "basic", "downsample_in_first_stage": False}
    else:
        kwargs |= {"num_stages": 2, "patch_size": 4}
    return AutoConfig.for_model(family, **kwargs | overrides)


def tiny_audio_config(
    family: str = "whisper",
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    num_mel_bins: int = 80,
    max_source_positions: int = 50,
    **overrides,
) -> PreTrainedConfig:
    """Whisper-style encoders take 2 * max_source_positions mel frames (100 frames = 1 s at hop 160)."""
    if family == "wav2vec2":
        kwargs = _transformer(hidden, layers, heads) | {
            "conv_dim": (16, 16, 16),
            "conv_stride": (5, 4, 4),
            "conv_kernel": (10, 8, 4),
            "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2,
            "do_stable_layer_norm": True,
            "feat_extract_norm": "layer",
        }
        return AutoConfig.for_model(family, **kwargs | overrides)
    kwargs = {
        "d_model": hidden,
        "encoder_layers": layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * hidden,
        "num_mel_bins": num_mel_bins,
        "max_source_positions": max_source_positions,
    }
    if family == "whisper":
        kwargs |= {
            "decoder_layers": 1,
            "decoder_attention_heads": heads,
            "decoder_ffn_dim": 4 * hidden,
            "vocab_size": 64,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "decoder_start_token_id": 1,
        }
    return AutoConfig.for_model(family, **kwargs | overrides)


def tiny_sequence_config(channels: int = 6, window: int = 32, hidden: int = 32, layers: int = 1, heads: int = 4):
    """An encoder for a sequence-kind modality (a (time, channels) signal such as an IMU stream).

    Any encoder that reads (channels, frames) works; a Whisper-style encoder does, with `num_mel_bins`
    as the channel count and windows of `window` frames (its two strided convolutions halve them).

    Example:
        >>> tiny_sequence_config(channels=6, window=32).num_mel_bins
        6
    """
    return tiny_audio_config("whisper", hidden, layers, heads, num_mel_bins=channels, max_source_positions=window // 2)
