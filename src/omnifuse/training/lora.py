"""LoRA on the language model only, via peft; saved alone (adapter/) or merged into the model.

Target modules are resolved to full module names inside `language_model`, so an encoder layer that
happens to share a name (SigLIP's `q_proj`) is never adapted. Other parts that a stage trains
(projectors, encoders in `full`) become peft `modules_to_save`: stored in full inside the adapter.

Example:
    >>> peft_model = apply_lora(model, LoraSection(r=8), train_parts=["projector.image"])  # doctest: +SKIP
    >>> save_adapter(peft_model, "out/adapter", base_model="models/base")  # doctest: +SKIP
    >>> model = load_with_adapter("out/adapter")  # base from adapter_config.json  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from omnifuse.modeling.model import OmniForConditionalGeneration
from omnifuse.training.recipe import LoraSection, RecipeError

LM_PREFIX = "language_model."
ADAPTER_CONFIG = "adapter_config.json"
BASE_MODEL_DIR = "base_model"
# peft wraps these layer types; a name that points elsewhere (a norm, an activation) is a recipe error.
LORA_LAYERS = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d)


def lora_target_names(model: OmniForConditionalGeneration, target_modules: list[str], key: str = "lora") -> list[str]:
    """Full names of the LM layers whose last name component is in `target_modules`.

    Example:
        >>> lora_target_names(model, ["q_proj"])[:1]  # doctest: +SKIP
        ['language_model.model.layers.0.self_attn.q_proj']
    """
    wanted = set(target_modules)
    names = [
        name
        for name, module in model.named_modules()
        if name.startswith(LM_PREFIX) and name.rsplit(".", 1)[-1] in wanted and isinstance(module, LORA_LAYERS)
    ]
    if not names:
        available = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.language_model.named_modules() if n and isinstance(m, nn.Linear)}
        )
        raise RecipeError(
            f"none of {sorted(wanted)} is a layer of the language model",
            path=f"{key}.target_modules",
            suggestion=f"its linear layers are named {available}",
        )
    return names


def apply_lora(
    model: OmniForConditionalGeneration, lora: LoraSection, train_parts: list[str], key: str = "lora"
) -> PeftModel:
    """Wrap `model` with LoRA adapters on its LM; `train_parts` (e.g. "projector.image") train in full."""
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_names(model, lora.target_modules, key),
        modules_to_save=[_module_path(part) for part in train_parts if part != "language_model"] or None,
    )
    return get_peft_model(model, config)


def _module_path(part: str) -> str:
    """Part name -> module path: "projector.image" -> "projectors.image", "encoder.audio" -> "encoders.audio";
    a top-level part ("grounding_head") is its own path."""
    group, dot, name = part.partition(".")
    return f"{group}s.{name}" if dot else part


def base_of(model: nn.Module) -> OmniForConditionalGeneration:
    """The omnifuse model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def save_adapter(peft_model: PeftModel, folder: str | Path, base_model: str | None) -> Path:
    """Write the adapter (LoRA + modules_to_save weights) and the base it applies to.

    `base_model` is a folder path (written as given, or relative to the adapter when inside it).
    """
    folder = Path(folder)
    peft_model.peft_config["default"].base_model_name_or_path = base_model
    # Embeddings are never adapted here; "auto" would look the base up on the Hub to check its vocabulary.
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    return folder


def save_base_model(model: OmniForConditionalGeneration, processor, folder: str | Path) -> str:
    """Save the model a LoRA stage starts from (when no folder holds it yet), atomically; returns the path."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return str(folder)  # a resumed run: written before the first checkpoint of this stage
    partial = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    processor.save_pretrained(partial)
    os.replace(partial, folder)
    return str(folder)


def merge_lora(peft_model: PeftModel) -> OmniForConditionalGeneration:
    """Fold the adapters into the LM weights (and the trained module copies back in place)."""
    return peft_model.merge_and_unload()


def load_with_adapter(
    adapter: str | Path, base: str | Path | None = None, merge: bool = False
) -> OmniForConditionalGeneration | PeftModel:
    """A base omnifuse model with a trained adapter, ready for generation or evaluation.

    `base` defaults to the adapter's `base_model_name_or_path` (relative paths are read from the
    adapter folder). With `merge=True` the result is a plain model with the adapter folded in.

    Example:
        >>> model = load_with_adapter("runs/sft/adapter", merge=True).eval()  # doctest: +SKIP
        >>> processor = OmniProcessor.from_pretrained("runs/sft/adapter")  # doctest: +SKIP
    """
    adapter = Path(adapter)
    if base is None:
        config = json.loads((adapter / ADAPTER_CONFIG).read_text())
        base = config.get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{adapter / ADAPTER_CONFIG} names no base model; pass base=FOLDER")
        base = base if Path(base).is_absolute() else adapter / base
    model = OmniForConditionalGeneration.from_pretrained(str(base), dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(model, str(adapter))
    return peft_model.merge_and_unload() if merge else peft_model


__all__ = [
    "apply_lora",
    "base_of",
    "load_with_adapter",
    "lora_target_names",
    "merge_lora",
    "save_adapter",
    "save_base_model",
]
