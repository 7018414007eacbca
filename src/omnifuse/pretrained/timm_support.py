"""Import timm beside this project's CPU build of torch.

timm imports torchvision. PyPI's torchvision for torch 2.13.0 (0.28.0) is a CUDA build: its C operators
cannot load beside a CPU torch, and its import then fails registering fake kernels for `torchvision::nms`
and `qnms`. timm uses only torchvision's Python side, so declaring those two operator schemas (only when
torchvision's own library did not load) lets the import succeed. Call `prepare_torchvision()` before the
first import of timm or torchvision in a process.

Example:
    >>> prepare_torchvision()   # doctest: +SKIP
    >>> import timm             # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

NMS_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_fragment: torch.library.Library | None = None  # kept alive: dropping it would unregister the schemas


def _torchvision_ops_loadable(package_dir: Path) -> bool:
    libraries = sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd"))
    if not libraries:
        return False
    try:
        torch.ops.load_library(str(libraries[0]))
    except OSError:
        return False
    return True


def prepare_torchvision() -> bool:
    """Make `import torchvision` work without its C operators; True when the schemas had to be declared."""
    global _fragment
    if "torchvision" in sys.modules or _fragment is not None:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or _torchvision_ops_loadable(Path(spec.origin).parent):
        return False
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for schema in NMS_SCHEMAS:
        _fragment.define(schema)
    return True


__all__ = ["prepare_torchvision"]
