"""Fusion designs that a single-LM, placeholder-fusion checkpoint (LLaVA) cannot express.

- a mixture of per-modality LoRA adapters: LLaVA has one set of LM weights, so adapters that switch on
  per input cannot be written; merging one of them is a different model (it would apply to every prompt);
- cross-attention fusion: LLaVA only scatters features into placeholder tokens.

Example:
    >>> fusion_problems(model.config, "runs/mix")  # doctest: +SKIP
    ["per-modality LoRA mixture ('image'): LLaVA has one language model ..."]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIXTURE_DIR = "modality_lora"  # training.modality_lora.MIXTURE_DIR, without importing peft


def mixture_names(source: Any) -> list[str]:
    """Adapter names of a per-modality LoRA mixture in a folder or a (peft) model; [] when there is none."""
    if isinstance(source, (str, Path)):
        root = Path(source) / MIXTURE_DIR
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    peft_config = getattr(source, "peft_config", None)
    if not isinstance(peft_config, dict) or not hasattr(source, "get_base_model"):
        return []
    names = set(source.get_base_model().config.modality_specs())
    return sorted(peft_config) if set(peft_config) <= names else []


def fusion_problems(config, source: Any = None) -> list[str]:
    """One line per fusion feature of `config` / `source` (folder or model) that LLaVA cannot hold."""
    problems = [
        f"{name}: fusion 'cross_attention' has no LLaVA equivalent (LLaVA fuses features at placeholder tokens)"
        for name, spec in config.modality_specs().items()
        if spec.fusion == "cross_attention"
    ]
    names = mixture_names(source) if source is not None else []
    if names:
        problems.append(
            f"per-modality LoRA mixture {names}: LLaVA has one language model, so adapters switched per input "
            "cannot be expressed; to export a model that applies one adapter to every prompt, merge it first "
            "(PeftModel.from_pretrained(model, 'DIR/modality_lora/NAME').merge_and_unload())"
        )
    return problems


__all__ = ["fusion_problems", "mixture_names"]
