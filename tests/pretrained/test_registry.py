"""The registry's entries, the EfficientNet name map, and the `omnifuse pretrained` commands."""

from __future__ import annotations

import importlib
import json
import re

import pytest
from efficientnet_lite_pytorch import EfficientNet

from omnifuse.cli import main
from omnifuse.pretrained.convert_timm import timm_name
from omnifuse.pretrained.registry import REGISTRY
from omnifuse.pretrained.verify import PretrainedFormatError

OPEN_LICENSES = {"Apache-2.0", "MIT"}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_entry_is_pinned_open_and_convertible(name):
    entry = REGISTRY[name]
    assert entry.license in OPEN_LICENSES
    for item in entry.files:
        assert re.fullmatch(r"[0-9a-f]{64}", item.sha256) and re.fullmatch(r"\d+(\.\d+)*", item.version)
    module, function = entry.converter.split(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_the_issue_names_are_registered():
    wanted = {"smollm2-135m-instruct", "whisper-tiny.en", "whisper-base", "efficientnet-lite0", "all-minilm-l6-v2"}
    assert wanted <= set(REGISTRY)
    base = REGISTRY["whisper-base"]
    assert [f.save_as for f in base.files].count("model.bin") == 2 and len(base.requirements) == 2


def test_efficientnet_names_map_one_to_one_onto_timm_blocks():
    source = EfficientNet.from_name("efficientnet-lite0").state_dict()
    mapped = [timm_name(name) for name in source]
    assert len(set(mapped)) == len(source) == 296
    assert timm_name("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert timm_name("_blocks.1._expand_conv.weight") == "blocks.1.0.conv_pw.weight"
    assert timm_name("_blocks.15._bn2.running_var") == "blocks.6.0.bn3.running_var"
    assert timm_name("_fc.weight") == "classifier.weight" and timm_name("_bn1.bias") == "bn2.bias"


def test_unknown_efficientnet_parameters_are_refused():
    with pytest.raises(PretrainedFormatError, match="beyond EfficientNet-Lite0's 16 blocks"):
        timm_name("_blocks.16._bn0.weight")
    with pytest.raises(PretrainedFormatError, match="no _se_reduce"):
        timm_name("_blocks.3._se_reduce.weight")


def test_list_prints_every_entry_as_json(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OMNIFUSE_HOME", str(tmp_path))
    assert main(["pretrained", "list"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == "pretrained-list"
    assert {m["name"] for m in result["models"]} == set(REGISTRY)
    assert not any(m["pulled"] for m in result["models"])


def test_pulling_an_unknown_name_exits_2_with_a_json_error(capsys):
    assert main(["pretrained", "pull", "gemma-2b"]) == 2
    captured = capsys.readouterr()
    assert "unknown pretrained model 'gemma-2b'" in captured.err
    assert json.loads(captured.out.strip())["error_type"] == "UsageError"
