"""Distributed training: torchrun DDP (gloo, CPU) vs one process, and strategy selection from accelerate configs."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from omnifuse.training.checkpoint import read_state
from omnifuse.training.distributed import make_accelerator, strategy_plugins
from omnifuse.training.recipe import RecipeError, validate_recipe
from omnifuse.training.trainer import train

STEPS = 2  # per stage


def recipe_dict(
    model: dict, data: Path, out: Path, batch_size: int, grad_accum: int, distributed: str | None = None
) -> dict:
    """`full` (every part, with text-only batches leaving the encoder unused) then LoRA `sft`."""
    stage = {"max_steps": STEPS, "batch_size": batch_size, "grad_accum": grad_accum}
    lrs = {"encoders": 1e-3, "projectors": 1e-3, "language_model": 1e-3}
    return {
        "model": model,
        "data": {"train": str(data), "max_length": 128},
        "stages": [{"name": "full", "lr": lrs, **stage}, {"name": "sft", "lr": lrs, "lora": {"r": 4}, **stage}],
        "output_dir": str(out),
        "checkpoints": {"every": 100, "keep": 1},
        "distributed": distributed,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_ddp_matches_one_process_with_the_same_global_batch(tiny_model, bench, tmp_path):
    ddp_config = tmp_path / "ddp.yaml"
    ddp_config.write_text("distributed_type: MULTI_CPU\nnum_processes: 2\n")  # as `accelerate config` writes it
    recipe_path = tmp_path / "recipe.yaml"
    # 2 processes x 1 sample x 2 accumulation steps = 4 samples per optimizer step
    recipe = recipe_dict(tiny_model, bench, tmp_path / "ddp", 1, 2, distributed=str(ddp_config))
    recipe_path.write_text(json.dumps(recipe))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command += ["--master_port", str(free_port()), "-m", "omnifuse.training.trainer", str(recipe_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [json.loads(line)["steps"] for line in run.stdout.splitlines() if line.startswith("{")] == [2 * STEPS]
    with contextlib.redirect_stderr(io.StringIO()):
        train(validate_recipe(recipe_dict(tiny_model, bench, tmp_path / "single", 4, 1)))  # one process x 4 samples
    ddp, single = (load_file(tmp_path / name / "model.safetensors") for name in ("ddp", "single"))
    assert ddp.keys() == single.keys()
    diffs = {k: (ddp[k] - single[k]).abs() for k in ddp}
    worst = max(d.max().item() for d in diffs.values())
    mean = sum(d.sum().item() for d in diffs.values()) / sum(d.numel() for d in diffs.values())
    print(f"DDP (2 x 1 x accum 2) vs single (4): final weights max abs diff {worst:.2e}, mean {mean:.2e}")
    # Summation order differs (padding, all-reduce); Adam turns that float noise into up to lr-sized steps
    # where a gradient is near zero (key biases), so the bound is a fraction of one step (lr 1e-3).
    assert worst < 1e-4 and mean < 1e-8
    states = [read_state(tmp_path / name / "checkpoints" / f"step-{2 * STEPS}") for name in ("ddp", "single")]
    assert states[0].world_size == 2 and states[1].world_size == 1
    assert [round(x, 5) for _, x in states[0].history] == [round(x, 5) for _, x in states[1].history]


@pytest.fixture
def fresh_accelerate_state():
    """Strategy tests build their own Accelerator; leave no shared accelerate state to other tests."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


FSDP_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_offload_params: false
  fsdp_reshard_after_forward: true
mixed_precision: bf16
num_processes: 8
"""


def test_an_fsdp_accelerate_config_becomes_the_fsdp_plugin(tmp_path):
    path = tmp_path / "fsdp.yaml"
    path.write_text(FSDP_CONFIG)
    plugins, kind = strategy_plugins(str(path))
    plugin = plugins["fsdp_plugin"]
    assert kind == "FSDP"
    assert (plugin.fsdp_version, plugin.transformer_cls_names_to_wrap) == (2, ["LlamaDecoderLayer"])
    assert plugin.state_dict_type.name == "FULL_STATE_DICT" and plugin.reshard_after_forward is True


def test_fsdp_on_cpu_is_refused_instead_of_silently_running_ddp(tiny_model, bench, tmp_path, fresh_accelerate_state):
    path = tmp_path / "fsdp.yaml"
    path.write_text(FSDP_CONFIG)
    recipe = validate_recipe(recipe_dict(tiny_model, bench, tmp_path / "out", 4, 1, distributed=str(path)))
    with pytest.raises(RecipeError, match=r"distributed: .* selects FSDP, but accelerate runs it only on GPUs"):
        make_accelerator(recipe)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("distributed_type: FSDP\nfsdp_config:\n  fsdp_sharding_stratgy: FULL_SHARD\n",
         "distributed.fsdp_config.fsdp_sharding_stratgy: unknown key; did you mean 'fsdp_sharding_strategy'?"),
        ("distributed_type: TPU_POD\n", "distributed_type 'TPU_POD' is not supported"),
        ("- not a mapping\n", "is not an accelerate config"),
    ],
)  # fmt: skip
def test_bad_accelerate_configs_are_recipe_errors(tmp_path, config, fragment):
    path = tmp_path / "accelerate.yaml"
    path.write_text(config)
    with pytest.raises(RecipeError) as caught:
        strategy_plugins(str(path))
    assert fragment in str(caught.value)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="DeepSpeed is installed")
def test_deepspeed_without_the_package_says_how_to_get_it(tmp_path):
    path = tmp_path / "ds.yaml"
    path.write_text("distributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stage: 2\n")
    with pytest.raises(RecipeError, match="selects DeepSpeed, which is not installed; pip install deepspeed"):
        strategy_plugins(str(path))


def test_a_ddp_config_needs_no_plugin(tmp_path, fresh_accelerate_state):
    path = tmp_path / "ddp.yaml"
    path.write_text("distributed_type: MULTI_CPU\nnum_processes: 2\n")
    assert strategy_plugins(str(path)) == ({}, "MULTI_CPU")
    assert torch.distributed.is_available()
