"""An EfficientNet-Lite state dict (lukemelas-style `efficientnet_pytorch` names) -> a transformers TimmWrapper folder.

The result is `config.json` (`model_type: timm_wrapper`, architecture `tf_efficientnet_lite0`, whose static
TF-style "same" padding and batch-norm epsilon 1e-3 match the checkpoint) and `model.safetensors` with timm's
parameter names under `timm_model.`. Converting needs neither timm nor the source package; loading the folder
needs timm (see `omnifuse.pretrained.timm_support`).

Example:
    >>> convert_efficientnet_lite({"weights.pth": Path("efficientnet-lite0.pth")}, Path("out"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from omnifuse.pretrained.verify import PretrainedFormatError

TIMM_ARCHITECTURE = "tf_efficientnet_lite0"
# Blocks per stage of EfficientNet-Lite0 (width and depth multipliers 1.0).
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# The first block has no expansion (depthwise-separable); later ones are inverted residuals.
SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def _stage_position(flat_index: int) -> tuple[int, int]:
    """Flat block number -> (stage, index in stage)."""
    start = 0
    for stage, depth in enumerate(LITE0_STAGE_DEPTHS):
        if flat_index < start + depth:
            return stage, flat_index - start
        start += depth
    raise PretrainedFormatError(f"block {flat_index} is beyond EfficientNet-Lite0's {start} blocks")


def timm_name(source_name: str) -> str:
    """`_blocks.3._bn1.weight` -> `blocks.2.0.bn2.weight`; `_fc.bias` -> `classifier.bias`.

    Example:
        >>> timm_name("_blocks.0._project_conv.weight")
        'blocks.0.0.conv_pw.weight'
    """
    block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", source_name)
    if block:
        flat, layer, leaf = int(block.group(1)), block.group(2), block.group(3)
        stage, index = _stage_position(flat)
        table = SEPARABLE_BLOCK if flat == 0 else INVERTED_RESIDUAL
        if layer not in table:
            raise PretrainedFormatError(f"unexpected layer {source_name!r} (EfficientNet-Lite has no {layer})")
        return f"blocks.{stage}.{index}.{table[layer]}.{leaf}"
    module, _, leaf = source_name.partition(".")
    if module not in TOP_LEVEL:
        raise PretrainedFormatError(f"unexpected parameter {source_name!r} in the EfficientNet-Lite state dict")
    return f"{TOP_LEVEL[module]}.{leaf}"


def timm_wrapper_config(num_classes: int) -> dict:
    """A TimmWrapperConfig as JSON: architecture, classes and the ImageNet preprocessing it was trained with."""
    return {
        "model_type": "timm_wrapper",
        "architectures": ["TimmWrapperForImageClassification"],
        "architecture": TIMM_ARCHITECTURE,
        "num_classes": num_classes,
        "do_pooling": True,
        "pretrained_cfg": {
            "architecture": TIMM_ARCHITECTURE,
            "num_classes": num_classes,
            "input_size": [3, 224, 224],
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "num_features": 1280,
            "classifier": "classifier",
        },
    }


def convert_efficientnet_lite(files: dict[str, Path], out_dir: Path) -> None:
    """Rename the `.pth` state dict's parameters to timm's and write a TimmWrapper folder to `out_dir`."""
    source = next((path for path in files.values() if path.suffix == ".pth"), None)
    if source is None:
        raise PretrainedFormatError(f"no .pth state dict among {sorted(files)}")
    state = torch.load(source, map_location="cpu", weights_only=True)  # weights only: no pickled code runs
    tensors = {f"timm_model.{timm_name(name)}": value.contiguous() for name, value in state.items()}
    num_classes = int(state["_fc.weight"].shape[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(timm_wrapper_config(num_classes), indent=2) + "\n")


__all__ = ["convert_efficientnet_lite", "timm_name", "timm_wrapper_config"]
