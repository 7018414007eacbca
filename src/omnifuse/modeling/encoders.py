"""Modality encoders: any transformers vision/audio encoder, wrapped with feature-layer selection.

Nothing here is family-specific. The encoder's input name, output length and hidden size are
read off a forward pass on the meta device (free: no memory, no weights), so a new encoder
family needs no code here. Convolutional backbones (ResNet, ConvNeXt, ...) return feature maps
(batch, channels, height, width); those are read as height * width tokens in raster order.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig

from omnifuse.config import KINDS, ModalitySpec, encoder_config_from_dict

# Whisper-style log-mel encoders take fixed windows of 2 * max_source_positions frames.
DEFAULT_MEL_WINDOW_FRAMES = 3000
DEFAULT_WAVEFORM_WINDOW_SAMPLES = 16000 * 10
# Input side for vision backbones whose config has no image_size (ResNet, ConvNeXt): ImageNet's crop.
DEFAULT_IMAGE_SIZE = 224


def select_encoder_config(config: PreTrainedConfig, kind: str) -> PreTrainedConfig:
    """Pick the tower a modality kind needs out of a full checkpoint config (e.g. CLIP -> its vision config)."""
    tower = KINDS[kind].tower
    sub = getattr(config, tower, None) if tower else None
    return sub if isinstance(sub, PreTrainedConfig) else config


def build_encoder_module(config: PreTrainedConfig) -> nn.Module:
    """The encoder module for a config: the model itself, or the encoder half of an encoder-decoder."""
    if not getattr(config, "is_encoder_decoder", False):
        return AutoModel.from_config(config)
    with torch.device("meta"):
        encoder_class = type(AutoModel.from_config(config).get_encoder())
    return encoder_class(config)


@dataclass(frozen=True)
class EncoderProbe:
    """What a meta-device forward pass tells about an encoder, for one full-size input."""

    main_input_name: str
    input_shape: tuple[int, ...]  # one item, without the batch dimension
    output_length: int  # hidden-state tokens for that input (before CLS selection)
    hidden_size: int
    has_length_function: bool

    @property
    def input_length(self) -> int:
        return self.input_shape[-1]


def default_input_shape(config: PreTrainedConfig, input_name: str) -> tuple[int, ...]:
    """Full-size input of one item: an image crop, a mel window or a waveform window."""
    if input_name == "pixel_values":
        size = getattr(config, "image_size", DEFAULT_IMAGE_SIZE)
        side = size if isinstance(size, int) else size[0]
        return (getattr(config, "num_channels", 3), side, side)
    if input_name == "input_features":
        frames = 2 * config.max_source_positions if hasattr(config, "max_source_positions") else None
        return (config.num_mel_bins, frames or DEFAULT_MEL_WINDOW_FRAMES)
    return (DEFAULT_WAVEFORM_WINDOW_SAMPLES,)


@lru_cache(maxsize=64)
def _probe_cached(config_json: str) -> tuple[EncoderProbe, nn.Module]:
    config = encoder_config_from_dict(json.loads(config_json))
    with torch.device("meta"):
        module = build_encoder_module(config).eval()  # eval: no layerdrop coin flips on meta
        name = module.main_input_name
        shape = default_input_shape(config, name)
        out = module(**{name: torch.empty(1, *shape)}, output_hidden_states=True)
    hidden = as_tokens(out.hidden_states[-1])
    probe = EncoderProbe(
        main_input_name=name,
        input_shape=tuple(shape),
        output_length=hidden.shape[1],
        hidden_size=hidden.shape[-1],
        has_length_function=hasattr(module, "_get_feat_extract_output_lengths"),
    )
    return probe, module


def as_tokens(hidden: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, dim) as is; a convolutional feature map (batch, dim, h, w) -> (batch, h * w, dim).

    Example:
        >>> as_tokens(torch.zeros(2, 64, 4, 4)).shape
        torch.Size([2, 16, 64])
    """
    return hidden.flatten(2).transpose(1, 2) if hidden.dim() == 4 else hidden


def probe_encoder(encoder_config: dict[str, Any] | PreTrainedConfig) -> EncoderProbe:
    """Input name, full-input output length and hidden size of an encoder, without building it."""
    data = encoder_config.to_dict() if isinstance(encoder_config, PreTrainedConfig) else encoder_config
    return _probe_cached(json.dumps(data, sort_keys=True, default=str))[0]


def valid_output_length(encoder_config: dict[str, Any], valid_input: int) -> int:
    """Encoder tokens that cover `valid_input` real frames/samples of a (padded) window."""
    data = json.dumps(encoder_config, sort_keys=True, default=str)
    probe, module = _probe_cached(data)
    if valid_input >= probe.input_length:
        return probe.output_length
    if probe.has_length_function:
        lengths = module._get_feat_extract_output_lengths(torch.tensor([valid_input]))
        # Some encoders return (after-conv, after-pooling) lengths: the last is the output.
        lengths = lengths[-1] if isinstance(lengths, tuple) else lengths
        return min(int(lengths.reshape(-1)[0]), probe.output_length)
    return math.ceil(valid_input * probe.output_length / probe.input_length)


def selected_length(spec: ModalitySpec, encoder_tokens: int) -> int:
    """Tokens left after the select strategy ("default" drops the CLS token)."""
    return encoder_tokens - 1 if spec.select_strategy == "default" else encoder_tokens


def load_pretrained_encoder(path: str, kind: str) -> tuple[nn.Module, PreTrainedConfig]:
    """The encoder of a local folder or hub id, with weights: the tower `kind` needs, or the encoder half."""
    full_config = AutoConfig.from_pretrained(path)
    config = select_encoder_config(full_config, kind)
    if config is not full_config:
        # A full CLIP/SigLIP-style checkpoint: load only the tower this modality needs.
        model_class = type(AutoModel.from_config(config, dtype=torch.float32))
        return model_class.from_pretrained(path, config=config), config
    model = AutoModel.from_pretrained(path)
    if getattr(config, "is_encoder_decoder", False):
        model = model.get_encoder()
    return model, config


class ModalityEncoder(nn.Module):
    """An encoder plus the LLaVA-style feature selection: hidden layer(s), CLS kept or dropped."""

    def __init__(self, model: nn.Module, spec: ModalitySpec):
        super().__init__()
        self.model = model
        self.feature_layer = spec.feature_layer
        self.drop_cls = spec.select_strategy == "default"
        # Waveform encoders take a 2D sample mask; log-mel encoders (Whisper-style) are trained on
        # zero-padded windows and some read `attention_mask` as a 4D attention bias, so they get none.
        self.accepts_mask = model.main_input_name == "input_values" and "attention_mask" in _forward_parameters(model)

    @property
    def main_input_name(self) -> str:
        return self.model.main_input_name

    def forward(self, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"attention_mask": mask} if (mask is not None and self.accepts_mask) else {}
        out = self.model(**{self.main_input_name: values}, output_hidden_states=True, **kwargs)
        layers = [self.feature_layer] if isinstance(self.feature_layer, int) else self.feature_layer
        selected = [as_tokens(out.hidden_states[i]) for i in layers]
        if self.drop_cls:
            selected = [h[:, 1:] for h in selected]
        return torch.cat(selected, dim=-1)


def _forward_parameters(model: nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)
