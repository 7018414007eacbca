"""`prepare_torchvision`: declares torchvision's nms schemas only when its own operator library cannot load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
# The module alone, not `import omnifuse` (which calls it first, then imports transformers).
CHECK = """
import importlib.util, json, sys, torch
spec = importlib.util.spec_from_file_location("timm_support", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
prepare_torchvision = module.prepare_torchvision
declared = prepare_torchvision()
print(json.dumps({"declared": declared, "again": prepare_torchvision(),
                  "nms": hasattr(torch.ops.torchvision, "nms") if declared else None}))
"""


def run_check(extra_path: Path | None) -> str:
    path = [str(SRC)] + ([str(extra_path)] if extra_path else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    module = SRC / "omnifuse" / "pretrained" / "timm_support.py"
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(module)], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_a_torchvision_whose_operators_cannot_load_gets_the_schemas(tmp_path):
    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_C.so").write_bytes(b"not a shared library")  # like a CUDA build beside a CPU torch
    assert run_check(tmp_path) == '{"declared": true, "again": false, "nms": true}'


def test_nothing_is_declared_without_torchvision(tmp_path):
    assert (
        run_check(None if _torchvision_installed() else tmp_path) == '{"declared": false, "again": false, "nms": null}'
    )


def _torchvision_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None
