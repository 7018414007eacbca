"""Training stages in part names: which parts train, with which learning rate, and the log of it.

- `align`: projectors only (encoders and LM frozen), so the LM learns to read the new modality;
- `sft`: projectors + LM (full, or LoRA adapters on the LM), encoders frozen;
- `full`: everything.

Example:
    >>> model = prepare_stage_model(model, StageSection(name="align", max_steps=10))  # doctest: +SKIP
    >>> print(describe_trainable(model, "align"))  # doctest: +SKIP
    stage align: training projector.image 2,112/2,112 | frozen encoder.image 44,832, language_model 52,128
"""

from __future__ import annotations

import torch
from torch import nn

from omnifuse.errors import ModalityError
from omnifuse.modeling.model import OmniForConditionalGeneration
from omnifuse.training.lora import apply_lora, base_of
from omnifuse.training.recipe import LearningRates, RecipeError, StageSection

# Cross-attention blocks count as projectors (see lr_group): align, sft and full train them; align keeps the LM frozen.
STAGE_PARTS: dict[str, tuple[str, ...]] = {
    "align": ("projectors",),
    "sft": ("projectors", "language_model"),
    "full": ("encoders", "projectors", "language_model"),
    "contrastive": ("encoders",),  # plus the embedding heads, which live outside the model
}


def lr_group(part: str) -> str:
    """The learning-rate group of a part: "encoder.image" -> "encoders", "language_model" -> itself."""
    if part.startswith("encoder."):
        return "encoders"
    if part.startswith(("projector.", "cross_attention.")):
        return "projectors"
    return "language_model"


def trained_parts(model: OmniForConditionalGeneration, stage: StageSection | str) -> list[str]:
    """Concrete part names ("projector.image", ...) that a stage trains: its name's groups, plus `train`,
    minus `freeze`."""
    stage = stage if isinstance(stage, StageSection) else StageSection(name=stage, max_steps=1)
    groups = STAGE_PARTS[stage.name]
    parts = {part for part in model.part_modules() if lr_group(part) in groups}
    parts |= set(model.select_parts(*map(part_name, stage.train)))
    parts -= set(model.select_parts(*map(part_name, stage.freeze)))
    return [part for part in model.part_modules() if part in parts]


def part_name(name: str) -> str:
    """Recipes may spell a part like its module path: "encoders.depth" -> "encoder.depth"."""
    for plural, singular in (("encoders.", "encoder."), ("projectors.", "projector.")):
        if name.startswith(plural):
            return singular + name[len(plural) :]
    return name


def prepare_stage_model(model: OmniForConditionalGeneration, stage: StageSection, index: int = 0) -> nn.Module:
    """Freeze everything, unfreeze the stage's parts; with `lora`, wrap the LM in adapters instead.

    Returns the model to train: `model` itself, or a peft wrapper around it.
    """
    try:
        parts = trained_parts(model, stage)
    except ModalityError as err:
        raise RecipeError(str(err), path=f"stages.{index}") from None
    model.requires_grad_(False)
    model.unfreeze(*parts)
    if stage.lora is None:
        return model
    if isinstance(stage.lora, dict):  # one adapter per modality (a mixture of LoRAs)
        from omnifuse.training.modality_lora import apply_modality_lora

        return apply_modality_lora(model, stage.lora, parts, key=f"stages.{index}.lora")
    # peft freezes the base and makes adapters + modules_to_save trainable, which is the stage's intent.
    return apply_lora(model, stage.lora, parts, key=f"stages.{index}.lora")


def param_groups(model: nn.Module, lr: LearningRates, weight_decay: float) -> list[dict]:
    """One optimizer group per trained part group, each with its own peak learning rate (shared tensors once)."""
    omni = base_of(model)
    grouped: dict[str, list[torch.nn.Parameter]] = {}
    seen: set[int] = set()
    for part, module in omni.part_modules().items():
        for param in module.parameters():
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                grouped.setdefault(lr_group(part), []).append(param)
    if not grouped:
        raise ValueError(f"this stage trains no parameter of this model (parts: {sorted(omni.part_modules())})")
    return [
        {"name": name, "params": params, "lr": getattr(lr, name), "weight_decay": weight_decay}
        for name, params in grouped.items()
    ]


def describe_trainable(model: nn.Module, title: str) -> str:
    """One line naming each part with its trainable / total parameter counts."""
    counts = base_of(model).parameter_counts()
    trained = [f"{p} {c['trainable']:,}/{c['total']:,}" for p, c in counts.items() if c["trainable"]]
    frozen = [f"{p} {c['total']:,}" for p, c in counts.items() if not c["trainable"]]
    total = sum(c["trainable"] for c in counts.values())
    return f"{title}: training {total:,} parameters: {', '.join(trained)} | frozen: {', '.join(frozen) or 'nothing'}"


def is_projector_only(stage: StageSection) -> bool:
    """A stage that changes nothing but projectors (so a saved base folder stays valid for adapters)."""
    return stage.name == "align" and stage.lora is None and not stage.train


__all__ = [
    "STAGE_PARTS",
    "describe_trainable",
    "is_projector_only",
    "lr_group",
    "param_groups",
    "prepare_stage_model",
    "trained_parts",
]
