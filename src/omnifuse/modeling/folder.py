"""The one loader of an omnifuse folder (model + processor): eval, chat, serving, export and training use it.

A folder is either a full model (`config.json` of model_type "omnifuse" + weights + the processor) or
a LoRA stage's output (`adapter_config.json` + adapter weights + the processor, the base model in the
folder the adapter names). Anything else is a `FolderError` that says what the folder is and what to
do (a transformers LLaVA checkpoint: `omnifuse.interop.llava.import_llava`).

Example:
    >>> model, processor = load_omni_folder("runs/demo/model")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch

from omnifuse.errors import FolderError
from omnifuse.modeling.model import OmniForConditionalGeneration, check_omnifuse_config
from omnifuse.processing.processor import OmniProcessor
from omnifuse.safety.model_files import check_model_folder_files

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_folder(folder: str | Path) -> bool:
    """A LoRA stage's output: adapter weights + processor, with the base model in another folder."""
    folder = Path(folder)
    return (folder / ADAPTER_CONFIG).exists() and not (folder / "config.json").exists()


def check_omni_folder(folder: str | Path) -> Path:
    """The folder as a Path when it holds an omnifuse model or adapter and its processor; FolderError otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder} is not a folder; pass a folder written by save_pretrained or omnifuse train")
    if not is_adapter_folder(folder):
        if not (folder / "config.json").exists():
            raise FolderError(f"{folder}: no config.json here; pass a folder written by save_pretrained")
        check_omnifuse_config(folder)
    check_model_folder_files(folder, what="model folder")  # weights, processor, tokenizer, readable JSON
    return folder


def load_omni_folder(
    folder: str | Path, *, dtype: torch.dtype = torch.float32, merge_adapter: bool = True, weights: bool = True
) -> tuple[torch.nn.Module, OmniProcessor]:
    """Model (in eval mode) and processor of an omnifuse folder.

    `merge_adapter=False` keeps a LoRA folder as a peft model; `weights=False` builds the architecture
    only (training resume loads the checkpoint's weights itself).
    """
    folder = check_omni_folder(folder)
    processor = OmniProcessor.from_pretrained(folder)
    if is_adapter_folder(folder):
        from omnifuse.training.lora import load_with_adapter  # peft is only needed for adapter folders

        model = load_with_adapter(folder, merge=merge_adapter)
    elif weights:
        model = OmniForConditionalGeneration.from_pretrained(folder, dtype=dtype)
        if (folder / "modality_lora").is_dir():  # a mixture of per-modality LoRAs, kept unmerged
            from omnifuse.training.modality_lora import load_modality_lora

            model = load_modality_lora(model, folder)
    else:
        config = OmniForConditionalGeneration.config_class.from_pretrained(folder)
        return OmniForConditionalGeneration(config).to(dtype), processor
    return model.to(dtype).eval(), processor


__all__ = ["ADAPTER_CONFIG", "check_omni_folder", "is_adapter_folder", "load_omni_folder"]
