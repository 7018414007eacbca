"""Checks on a recipe's model section before anything is built: configs that cannot build, models that
cannot fit in this machine's memory.

A config dict is built on the meta device (no memory, a fraction of a second), so a recipe with
`num_attention_heads` that does not divide `hidden_size`, or `hidden_size: 65536`, fails with a
RecipeError naming the key instead of a traceback or an out-of-memory kill minutes later.

Example:
    >>> check_component_configs(ModelSection(text={"model_type": "llama", "hidden_size": 30,
    ...                                            "num_attention_heads": 4}))  # doctest: +SKIP
    RecipeError: model.text: this config cannot build a model: ... not a multiple of the number of attention heads
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from omnifuse.safety.model_files import physical_memory_bytes
from omnifuse.training.recipe import ModelSection, RecipeError

BYTES_PER_PARAMETER = 4  # training keeps a float32 master copy


def check_component_configs(section: ModelSection, memory_bytes: int | None = None) -> int:
    """Build each config-dict component on the meta device; returns their parameter count.

    Raises RecipeError (path `model.<name>`) when a config does not build, or when the parameters alone
    would need more than `memory_bytes` (default: this machine's RAM).
    """
    memory_bytes = memory_bytes or physical_memory_bytes()
    total = 0
    for name in ("text", "image", "audio", "video"):
        value = getattr(section, name)
        if isinstance(value, dict) and "model_type" in value:
            total += _meta_parameters(value, name)
    if memory_bytes and total * BYTES_PER_PARAMETER > memory_bytes:
        raise RecipeError(
            f"the configured components hold {total:,} parameters ({total * BYTES_PER_PARAMETER / 2**30:.1f} GiB "
            f"in float32), more than this machine's {memory_bytes / 2**30:.1f} GiB of memory",
            path="model",
            suggestion="use smaller hidden sizes / fewer layers",
        )
    return total


def _meta_parameters(config: dict[str, Any], name: str) -> int:
    options = {k: v for k, v in config.items() if k != "model_type"}
    try:
        built = AutoConfig.for_model(config["model_type"], **options)
        factory = AutoModelForCausalLM if name == "text" else AutoModel
        with torch.device("meta"):
            model = factory.from_config(built)
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a bad config
        reason = " ".join(str(err).split())[:300]
        raise RecipeError(f"this config cannot build a model: {reason}", path=f"model.{name}") from None
    return sum(p.numel() for p in model.parameters())


__all__ = ["check_component_configs"]
