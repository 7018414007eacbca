"""A mixture of LoRAs (Phi-4-multimodal): one peft LoRA adapter on the LM per modality, switched per sample.

A recipe stage names adapters by modality: `lora: {image: {r: 16, target_modules: [q_proj, v_proj]},
audio: {r: 8}}`. Each adapter is a standard peft LoRA adapter named after its modality. The rule
(applied by `modeling/routing.py` in every forward, training and generation alike): a sample gets the
adapters of the modalities it contains, summed; a text-only sample gets none, so it computes exactly
the bare LM. The stage's other parts (projectors, ...) train in place and are saved with the model.

After the stage the adapters are saved, unmerged, one folder each, under the model folder
(`OUT/modality_lora/image/`, `OUT/modality_lora/audio/`): each one is an ordinary peft adapter whose
base is the omnifuse folder two levels up, so it can be loaded, or merged, on its own:

Example:
    >>> base = OmniForConditionalGeneration.from_pretrained("runs/mix")  # doctest: +SKIP
    >>> image_only = PeftModel.from_pretrained(base, "runs/mix/modality_lora/image")  # doctest: +SKIP
    >>> image_only = image_only.merge_and_unload()  # an LM that always applies the image adapter  # doctest: +SKIP
    >>> model, processor = load_omni_folder("runs/mix")  # the mixture, routed per sample  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from omnifuse.modeling.model import OmniForConditionalGeneration
from omnifuse.training.lora import ADAPTER_CONFIG, lora_target_names
from omnifuse.training.recipe import LoraSection, RecipeError

MIXTURE_DIR = "modality_lora"


def apply_modality_lora(
    model: OmniForConditionalGeneration, loras: dict[str, LoraSection], train_parts: list[str], key: str = "lora"
) -> PeftModel:
    """Wrap `model` with one LoRA adapter per named modality; `train_parts` other than the LM train in place."""
    modalities = model.config.modality_specs()
    for name in loras:
        if name not in modalities:
            raise RecipeError(
                f"{name!r} is not a modality of this model",
                path=f"{key}.{name}",
                suggestion=f"its modalities: {sorted(modalities)}",
            )
    peft_model = None
    for name, section in loras.items():
        config = LoraConfig(
            r=section.r,
            lora_alpha=section.alpha,
            lora_dropout=section.dropout,
            target_modules=lora_target_names(model, section.target_modules, f"{key}.{name}"),
        )
        if peft_model is None:
            peft_model = get_peft_model(model, config, adapter_name=name)
        else:
            peft_model.add_adapter(name, config)
    activate_all(peft_model)
    # peft froze everything but the adapters; the stage's other parts train in the model itself.
    model.unfreeze(*[part for part in train_parts if part != "language_model"])
    return peft_model


def activate_all(peft_model: PeftModel) -> None:
    """Every adapter active (trainable); routing then masks each one to the rows holding its modality."""
    names = list(peft_model.peft_config)
    peft_model.base_model.set_adapter(names)
    for param_name, param in peft_model.named_parameters():
        if ".lora_" in param_name:
            param.requires_grad_(True)


def is_mixture(model: nn.Module) -> bool:
    """A peft model whose adapters are named after the modalities of its omnifuse model."""
    if not isinstance(model, PeftModel):
        return False
    names = set(model.get_base_model().config.modality_specs())
    return bool(set(model.peft_config)) and set(model.peft_config) <= names


def save_modality_lora(peft_model: PeftModel, model_folder: str | Path) -> list[Path]:
    """Write each adapter as its own peft folder under `model_folder/modality_lora/`; returns the folders."""
    root = Path(model_folder) / MIXTURE_DIR
    names = list(peft_model.peft_config)
    for name in names:
        peft_model.peft_config[name].base_model_name_or_path = "../.."  # the omnifuse folder holding them
    # peft writes a non-default adapter to root/<name>/; embeddings are never adapted here.
    peft_model.save_pretrained(str(root), selected_adapters=names, save_embedding_layers=False)
    return [root / name for name in names]


def save_mixture_model(peft_model: PeftModel, folder: str | Path, processor=None) -> list[Path]:
    """The whole mixture as an omnifuse folder: the model without its adapters, then the adapters beside it."""
    model = peft_model.get_base_model()
    clean = {
        name.replace(".base_layer.", "."): tensor for name, tensor in model.state_dict().items() if ".lora_" not in name
    }
    model.save_pretrained(folder, state_dict=clean)
    if processor is not None:
        processor.save_pretrained(folder)
    return save_modality_lora(peft_model, folder)


def finish_modality_lora(peft_model: PeftModel, model_folder: str | Path | None) -> OmniForConditionalGeneration:
    """Save the adapters (when a folder is given) and return the plain model, adapters removed unmerged."""
    if model_folder is not None:
        save_modality_lora(peft_model, model_folder)
    return peft_model.unload()


def mixture_folders(model_folder: str | Path) -> list[Path]:
    """The adapter folders of a saved mixture (empty when the model has none)."""
    root = Path(model_folder) / MIXTURE_DIR
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if (path / ADAPTER_CONFIG).is_file())


def load_modality_lora(model: OmniForConditionalGeneration, model_folder: str | Path) -> PeftModel:
    """Attach a saved mixture to its base model, every adapter active and routed per sample."""
    folders = mixture_folders(model_folder)
    if not folders:
        raise FileNotFoundError(f"{Path(model_folder) / MIXTURE_DIR}: no adapter folders")
    peft_model = PeftModel.from_pretrained(model, str(folders[0]), adapter_name=folders[0].name)
    for folder in folders[1:]:
        peft_model.load_adapter(str(folder), adapter_name=folder.name)
    peft_model.base_model.set_adapter([folder.name for folder in folders])
    peft_model.requires_grad_(False)
    return peft_model


__all__ = [
    "MIXTURE_DIR",
    "apply_modality_lora",
    "finish_modality_lora",
    "is_mixture",
    "load_modality_lora",
    "mixture_folders",
    "save_mixture_model",
    "save_modality_lora",
]
