"""The Accelerator of a run: DDP by default under torchrun, FSDP or DeepSpeed from an accelerate config.

Strategies:

- DDP (default): `torchrun --nproc_per_node N -m omnifuse.cli train recipe.yaml`. On CPU it runs over
  gloo; `batch_size` is per process, so N processes train like one with N times the batch (tested).
- FSDP: `distributed: fsdp.yaml` in the recipe (or `distributed=fsdp.yaml` on the command line),
  a file as written by `accelerate config`, for example::

      distributed_type: FSDP
      fsdp_config:
        fsdp_version: 2
        fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
        fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
        fsdp_state_dict_type: FULL_STATE_DICT

- DeepSpeed: `distributed_type: DEEPSPEED` with `deepspeed_config: {zero_stage: 2, ...}` (needs
  `pip install deepspeed`).

`fsdp_config` / `deepspeed_config` become accelerate's plugins (an unknown key is a RecipeError
naming the closest valid one); launcher settings (num_processes, machine_rank, ...) belong to
`torchrun` / `accelerate launch` and are ignored here, and precision always comes from the
recipe's `dtype`. accelerate runs FSDP and DeepSpeed on GPUs only; where it would silently fall
back to DDP (CPU) this module raises a RecipeError instead. Under them, checkpoints hold
accelerate's own (sharded) state (see checkpoint.py). On this CPU-only project machine the config
parsing and that refusal are tested; the GPU paths are accelerate's.

Example:
    >>> accelerator = make_accelerator(recipe)  # doctest: +SKIP
    >>> accelerator.num_processes, accelerator.distributed_type  # doctest: +SKIP
    (2, <DistributedType.MULTI_CPU: 'MULTI_CPU'>)
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import (
    DeepSpeedPlugin,
    DistributedDataParallelKwargs,
    DistributedType,
    FullyShardedDataParallelPlugin,
)

from omnifuse.safety.yaml_bounds import load_yaml_bounded, read_text_bounded
from omnifuse.training.recipe import Recipe, RecipeError

DDP_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_MUSA", "MULTI_HPU")
# `accelerate config` names that differ from the plugin fields they set.
FSDP_RENAMES = {
    "fsdp_offload_params": "cpu_offload",
    "fsdp_transformer_layer_cls_to_wrap": "transformer_cls_names_to_wrap",
}
DEEPSPEED_RENAMES = {"deepspeed_config_file": "hf_ds_config"}
DEEPSPEED_LAUNCH_ONLY = {
    "deepspeed_multinode_launcher",
    "deepspeed_hostfile",
    "deepspeed_exclusion_filter",
    "deepspeed_inclusion_filter",
}


@dataclasses.dataclass
class DDPOptions(DistributedDataParallelKwargs):
    """DDP options for every run: text-only batches leave encoders and projectors unused (DDP must not
    wait for their grads), and buffers (rotary tables, position ids) are constants never re-synced in
    forward, where ranks may run different numbers of micro-batches."""

    forward_sync_buffers: bool | None = None  # torch's successor of the deprecated broadcast_buffers


def make_accelerator(recipe: Recipe) -> Accelerator:
    """An Accelerator for the recipe: precision from `dtype`, strategy from `distributed` (if set).

    Gradient accumulation and the scheduler are stepped by the trainer itself (the loss is normalised
    by the supervised tokens of the whole global batch, which accelerate's per-step division is not).
    """
    on_accelerator = torch.accelerator.is_available()
    dtype = recipe.resolved_dtype(on_accelerator=on_accelerator)
    plugins, requested = strategy_plugins(recipe.distributed) if recipe.distributed else ({}, "NO")
    accelerator = Accelerator(
        # Without cpu=True accelerate ignores torchrun's environment on CPU-only machines (no gloo group).
        cpu=not on_accelerator,
        mixed_precision="bf16" if dtype == "bfloat16" else "no",
        step_scheduler_with_optimizer=False,
        **plugins,
    )
    accelerator.ddp_handler = DDPOptions(find_unused_parameters=True, forward_sync_buffers=False)
    check_strategy(accelerator, requested, recipe.distributed)
    return accelerator


def strategy_plugins(config_path: str) -> tuple[dict[str, Any], str]:
    """Accelerator keyword arguments (fsdp_plugin / deepspeed_plugin) and the requested distributed_type."""
    config = _read_config(config_path)
    kind = str(config.get("distributed_type", "NO")).upper()
    if kind == "FSDP":
        options = _plugin_options(
            config.get("fsdp_config") or {},
            FullyShardedDataParallelPlugin,
            "fsdp_",
            FSDP_RENAMES,
            set(),
            "distributed.fsdp_config",
        )
        return {"fsdp_plugin": FullyShardedDataParallelPlugin(**options)}, kind
    if kind == "DEEPSPEED":
        if importlib.util.find_spec("deepspeed") is None:
            raise RecipeError(
                f"{config_path} selects DeepSpeed, which is not installed",
                path="distributed",
                suggestion="pip install deepspeed (GPUs only), or choose FSDP / DDP",
            )
        options = _plugin_options(
            config.get("deepspeed_config") or {},
            DeepSpeedPlugin,
            "",
            DEEPSPEED_RENAMES,
            DEEPSPEED_LAUNCH_ONLY,
            "distributed.deepspeed_config",
        )
        return {"deepspeed_plugin": DeepSpeedPlugin(**options)}, kind
    if kind not in DDP_TYPES:
        raise RecipeError(
            f"{config_path}: distributed_type {kind!r} is not supported",
            path="distributed",
            suggestion=f"use FSDP, DEEPSPEED or one of {', '.join(DDP_TYPES)} (DDP)",
        )
    return {}, kind


def _read_config(config_path: str) -> dict[str, Any]:
    try:
        config = load_yaml_bounded(read_text_bounded(config_path, config_path), config_path)
    except OSError as err:
        raise RecipeError(f"cannot read {config_path}: {err.strerror or err}", path="distributed") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{config_path} is not valid YAML: {err}", path="distributed") from None
    if not isinstance(config, dict):
        raise RecipeError(f"{config_path} is not an accelerate config (a mapping)", path="distributed")
    return config


def _plugin_options(
    section: dict[str, Any], plugin: type, prefix: str, renames: dict[str, str], ignored: set[str], where: str
) -> dict[str, Any]:
    """Map `accelerate config` keys to plugin fields; an unknown key is an error with a suggestion."""
    valid = {f.name for f in dataclasses.fields(plugin)}
    options = {}
    for key, value in section.items():
        if key in ignored:
            continue
        bare = key.removeprefix(prefix)
        name = renames.get(key) or renames.get(bare) or next((n for n in (bare, key) if n in valid), None)
        if name is None:
            # Suggest in the config's own spelling (fsdp_sharding_strategy, not sharding_strategy).
            spellings = sorted({f"{prefix}{n}".replace(f"{prefix}{prefix}", prefix) for n in valid} | set(renames))
            close = difflib.get_close_matches(key, spellings, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(spellings)}"
            raise RecipeError("unknown key", path=f"{where}.{key}", suggestion=hint)
        options[name] = value
    return options


def check_strategy(accelerator: Accelerator, requested: str, config_path: str | None) -> None:
    """accelerate silently falls back to plain DDP where FSDP cannot run (CPU); say so instead."""
    wanted = {"FSDP": DistributedType.FSDP, "DEEPSPEED": DistributedType.DEEPSPEED}.get(requested)
    if wanted is not None and accelerator.distributed_type != wanted:
        raise RecipeError(
            f"{config_path} selects {requested}, but accelerate runs it only on GPUs, in processes started by "
            f"torchrun / accelerate launch (this run: {accelerator.distributed_type.value}, "
            f"{accelerator.num_processes} process(es) on {accelerator.device.type})",
            path="distributed",
            suggestion="on CPU drop `distributed` and launch with torchrun for DDP",
        )


__all__ = ["make_accelerator", "strategy_plugins"]
