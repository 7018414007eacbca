"""Run in a child process that can import timm: EfficientNet-Lite0 through omnifuse vs. its reference.

    python timm_probe.py CONVERTED_FOLDER REFERENCE_WEIGHTS.pth   -> one JSON line on stdout

A child process, because timm needs torchvision, which the tests install into a separate folder rather than
into the environment every other test shares.
"""

from __future__ import annotations

# isort: off
import omnifuse  # noqa: F401  first: it lets PyPI's CUDA torchvision import beside CPU torch (timm_support)

# isort: on
import json
import sys

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image, ImageDraw
from transformers import TimmWrapperForImageClassification, TimmWrapperModel

from omnifuse import OmniForConditionalGeneration
from omnifuse.modeling.presets import tiny_text_config
from omnifuse.processing.image import ImageSettings, normalize_views
from omnifuse.processing.tokenizer import build_bpe_tokenizer

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def fixed_image() -> Image.Image:
    """A deterministic 256 px scene: a gradient sky, a sun and a red box."""
    ramp = np.linspace(40, 220, 256, dtype=np.uint8)
    pixels = np.stack(
        [np.tile(ramp[:, None], (1, 256)), np.tile(ramp[None, :], (256, 1)), np.full((256, 256), 200)], -1
    )
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((150, 20, 220, 90), fill=(250, 220, 40))
    draw.rectangle((40, 140, 140, 230), fill=(200, 30, 30))
    return image


def main(folder: str, reference_weights: str) -> dict:
    pixels = normalize_views([fixed_image()], ImageSettings(size=224, resample="bicubic", **IMAGENET))
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=reference_weights).eval()
    classifier = TimmWrapperForImageClassification.from_pretrained(folder).eval()
    tokenizer = build_bpe_tokenizer(["a photo of a red box under the sun"] * 10, vocab_size=300)
    omni = OmniForConditionalGeneration.from_components(text=tiny_text_config(), image=folder, tokenizer=tokenizer)
    encoder = next(m for m in omni.modules() if type(m).__name__ == "ModalityEncoder")
    with torch.no_grad():
        ours, theirs = classifier(pixel_values=pixels).logits, reference(pixels)
        tokens = encoder.eval()(pixels)
        last_stage = (
            TimmWrapperModel.from_pretrained(folder).eval()(pixels, output_hidden_states=True).hidden_states[-1]
        )
    return {
        "max_abs_logit_diff": float((ours - theirs).abs().max()),
        "top1": [int(ours.argmax()), int(theirs.argmax())],
        "encoder_tokens": list(tokens.shape),
        "encoder_matches_timm": bool(torch.allclose(tokens, last_stage.flatten(2).transpose(1, 2), atol=1e-5)),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
