import math

import pytest
import torch

from omnifuse.config import ModalitySpec
from omnifuse.modeling.encoders import (
    ModalityEncoder,
    as_tokens,
    build_encoder_module,
    probe_encoder,
    valid_output_length,
)
from omnifuse.modeling.presets import AUDIO_FAMILIES, VISION_FAMILIES, tiny_audio_config, tiny_vision_config


def real_output(config, shape):
    module = build_encoder_module(config).eval()
    with torch.no_grad():
        out = module(**{module.main_input_name: torch.randn(1, *shape)}, output_hidden_states=True)
    return as_tokens(out.hidden_states[-1])


@pytest.mark.parametrize("family", VISION_FAMILIES + AUDIO_FAMILIES)
def test_probe_matches_a_real_forward(family):
    config = tiny_vision_config(family) if family in VISION_FAMILIES else tiny_audio_config(family)
    probe = probe_encoder(config)
    hidden = real_output(config, probe.input_shape)
    assert (probe.output_length, probe.hidden_size) == (hidden.shape[1], hidden.shape[2])


def test_probe_counts_cls_tokens():
    # 32 px / 8 px patches = 16 patches; CLIP adds a CLS token, SigLIP does not.
    assert probe_encoder(tiny_vision_config("siglip_vision_model")).output_length == 16
    assert probe_encoder(tiny_vision_config("clip_vision_model")).output_length == 17
    assert probe_encoder(tiny_audio_config("whisper")).main_input_name == "input_features"
    assert probe_encoder(tiny_audio_config("wav2vec2")).main_input_name == "input_values"


def test_whisper_valid_length_follows_the_stride_two_conv():
    config = tiny_audio_config("whisper").to_dict()
    for frames in (1, 2, 37, 99, 100):
        assert valid_output_length(config, frames) == math.ceil(frames / 2)


def test_feature_layers_and_cls_selection():
    config = tiny_vision_config("clip_vision_model", layers=3)
    module = build_encoder_module(config).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden = module(pixel_values=pixels, output_hidden_states=True).hidden_states
        full = ModalityEncoder(module, ModalitySpec(kind="image", encoder={"x": 1}, feature_layer=-2))(pixels)
        cat = ModalityEncoder(module, ModalitySpec(kind="image", encoder={"x": 1}, feature_layer=[1, -1]))(pixels)
        spec = ModalitySpec(kind="image", encoder={"x": 1}, feature_layer=-1, select_strategy="default")
        no_cls = ModalityEncoder(module, spec)(pixels)
    assert torch.equal(full, hidden[-2])
    assert torch.equal(cat, torch.cat([hidden[1], hidden[-1]], dim=-1))
    assert torch.equal(no_cls, hidden[-1][:, 1:])


def test_conv_feature_maps_become_raster_order_tokens():
    # ResNet at 32 px: stem /4, second stage /2 -> a 4 x 4 map of 2 * width channels.
    config = tiny_vision_config("resnet", hidden=8)
    module = build_encoder_module(config).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feature_map = module(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
        tokens = ModalityEncoder(module, ModalitySpec(kind="image", encoder={"x": 1}))(pixels)
    assert feature_map.shape == (2, 16, 4, 4)
    assert tokens.shape == (2, 16, 16)
    # token 4 * row + col holds the channels of map cell (row, col)
    assert torch.equal(tokens[:, 4 * 2 + 3], feature_map[:, :, 2, 3])
    assert probe_encoder(config).output_length == 16
