import torch

from omnifuse import OmniForConditionalGeneration
from omnifuse.modeling.presets import tiny_text_config, tiny_vision_config


def resnet_model():
    torch.manual_seed(0)
    return OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=64), image=tiny_vision_config("resnet", hidden=8)
    )


def batchnorm_means(module):
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_a_frozen_encoder_stays_in_eval_mode_and_keeps_batchnorm_statistics():
    model = resnet_model()
    model.freeze("encoders", "language_model")
    model.train()
    encoder = model.encoders["image"]
    assert not encoder.training and model.projectors["image"].training and model.language_model.training
    before = batchnorm_means(encoder)
    model.encode_media("image", torch.randn(4, 3, 32, 32) * 3 + 1)
    assert all(torch.equal(a, b) for a, b in zip(before, batchnorm_means(encoder)))

    model.unfreeze("encoder.image")
    model.train()
    assert encoder.training
    model.encode_media("image", torch.randn(4, 3, 32, 32) * 3 + 1)
    assert not all(torch.equal(a, b) for a, b in zip(before, batchnorm_means(encoder)))


def test_eval_mode_is_untouched():
    model = resnet_model().train()
    model.eval()
    assert not any(module.training for module in model.modules())
