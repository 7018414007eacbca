"""Import a transformers LLaVA folder into omnifuse, to continue training an existing checkpoint.

Both key layouts load: the llava-hf one (`language_model.model.*`, `language_model.lm_head.*`,
`vision_tower.*` with or without `vision_model.`, `multi_modal_projector.*`; transformers 5.x still
writes it) and the in-memory one of transformers >= 4.52 (`model.language_model.*`,
`model.vision_tower.*`, `model.multi_modal_projector.*`, `lm_head.*`).

Example:
    >>> model, processor = import_llava("llava-hf-folder")
    >>> processor.apply_chat_template(messages, add_generation_prompt=True)["input_ids"].shape
    torch.Size([1, 600])
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoProcessor, LlavaConfig

from omnifuse.config import ModalitySpec, OmniConfig
from omnifuse.errors import FolderError
from omnifuse.modeling.model import OmniForConditionalGeneration
from omnifuse.modeling.tokens import unit_token_count
from omnifuse.processing.image import RESAMPLE
from omnifuse.processing.processor import OmniProcessor

IMAGE = "image"


def import_llava(
    folder: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[OmniForConditionalGeneration, OmniProcessor]:
    """An omnifuse model and processor equal to the LLaVA checkpoint in `folder` (weights in safetensors).

    The image keeps LLaVA's tower, feature layer, select strategy, mlp projector and `<image>` token;
    the processor takes the tokenizer, chat template and normalization from the folder's processor files.

    Example:
        >>> model, processor = import_llava("llava-1.5-7b-hf")
        >>> model.config.modality_specs()["image"].projector
        {'type': 'mlp'}
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FolderError(f"{folder}: no config.json here; pass a transformers LLaVA checkpoint folder")
    try:
        llava = AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise FolderError(f"{folder}/config.json cannot be read as a transformers config: {err}") from None
    if not isinstance(llava, LlavaConfig):
        raise FolderError(f"{folder}/config.json has model_type {llava.model_type!r}, not 'llava'")
    tokenizer, image_token, processing = llava_processing(folder, llava)
    config = omni_config_from_llava(llava, image_token, processing)
    model = OmniForConditionalGeneration(config).to(dtype)
    load_llava_weights(model, read_safetensors(folder))
    _warn_on_token_count(folder, llava, model.config.modality_specs()[IMAGE])
    return model.eval(), OmniProcessor.from_model_config(model.config, tokenizer)


def omni_config_from_llava(llava: LlavaConfig, image_token: str, processing: dict[str, Any]) -> OmniConfig:
    """The OmniConfig of a LLaVA model: its text config plus one image modality with an mlp projector."""
    projector: dict[str, Any] = {"type": "mlp"}
    if llava.projector_hidden_act != "gelu":
        projector["hidden_act"] = llava.projector_hidden_act
    if not llava.multimodal_projector_bias:
        projector["bias"] = False
    spec = ModalitySpec(
        kind=IMAGE,
        encoder=llava.vision_config.to_dict(),
        feature_layer=llava.vision_feature_layer,
        select_strategy=llava.vision_feature_select_strategy,
        projector=projector,
        placeholder=image_token,
        placeholder_token_id=llava.image_token_index,
        processing=processing,
    )
    text = llava.text_config
    text.tie_word_embeddings = bool(llava.tie_word_embeddings or text.tie_word_embeddings)
    return OmniConfig(text_config=text, modalities={IMAGE: spec.to_dict()})


# -- processor files --
def llava_processing(folder: Path, llava: LlavaConfig) -> tuple[Any, str, dict[str, Any]]:
    """Tokenizer (with the chat template), image token and omnifuse image settings from a LLaVA folder."""
    try:
        hf = AutoProcessor.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as err:
        raise FolderError(
            f"{folder}: no loadable LLaVA processor (tokenizer + image processor files): {err}"
        ) from err
    tokenizer = hf.tokenizer
    tokenizer.chat_template = getattr(hf, "chat_template", None) or tokenizer.chat_template
    image_token = getattr(hf, "image_token", "<image>")
    token_id = tokenizer.convert_tokens_to_ids(image_token)
    if token_id != llava.image_token_index:
        raise FolderError(
            f"{folder}: the tokenizer maps {image_token!r} to {token_id}, config.json says {llava.image_token_index}"
        )
    return tokenizer, image_token, image_settings(hf.image_processor, llava.vision_config.image_size, folder)


def image_settings(image_processor: Any, side: int, folder: Path) -> dict[str, Any]:
    """omnifuse `processing` options (mean, std, resample) equivalent to a transformers image processor.

    omnifuse resizes every image to a side x side square; a shortest-edge resize plus center crop to
    the same side gives the same pixels for square images only, so that case is warned about.
    """
    if getattr(image_processor, "do_rescale", True) and abs(image_processor.rescale_factor - 1 / 255) > 1e-9:
        raise FolderError(f"{folder}: rescale_factor {image_processor.rescale_factor} is not 1/255")
    normalize = getattr(image_processor, "do_normalize", True)
    mean = list(image_processor.image_mean) if normalize else [0.0, 0.0, 0.0]
    std = list(image_processor.image_std) if normalize else [1.0, 1.0, 1.0]
    by_value = {int(value): name for name, value in RESAMPLE.items()}
    resample = by_value.get(int(image_processor.resample))
    if resample is None:
        raise FolderError(f"{folder}: image resample {image_processor.resample} has no omnifuse equivalent")
    size = image_processor.size or {}
    if getattr(image_processor, "do_center_crop", False) or "shortest_edge" in size:
        warnings.warn(
            f"{folder}: the LLaVA image processor resizes the shortest edge and center-crops; omnifuse resizes "
            f"to {side}x{side}, which gives the same pixels for square images only",
            stacklevel=3,
        )
    return {"mean": mean, "std": std, "resample": resample}


def _warn_on_token_count(folder: Path, llava: LlavaConfig, spec: ModalitySpec) -> None:
    processor_file = folder / "processor_config.json"
    if not processor_file.exists():
        return
    saved = json.loads(processor_file.read_text())
    patch = saved.get("patch_size") or llava.vision_config.patch_size
    count = (llava.vision_config.image_size // patch) ** 2 + saved.get("num_additional_image_tokens", 0)
    count -= 1 if saved.get("vision_feature_select_strategy") == "default" else 0
    expected = unit_token_count(spec, spec)
    if count != expected:
        warnings.warn(
            f"{folder}: its LlavaProcessor expands <image> to {count} tokens but the tower and projector give "
            f"{expected}; omnifuse's processor uses {expected}",
            stacklevel=3,
        )


# -- weights --
def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of `model.safetensors` or of the shards its index names."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise FolderError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(folder / name))
    return state


def omnifuse_key(key: str, lm_prefix: str) -> str | None:
    """The omnifuse name of a LLaVA checkpoint key in either layout; None for keys omnifuse has no place for."""
    renames = (
        ("model.language_model.", f"language_model.{lm_prefix}."),
        (f"language_model.{lm_prefix}.", f"language_model.{lm_prefix}."),
        ("language_model.model.", f"language_model.{lm_prefix}."),  # transformers names it `model` for any LM
        ("language_model.lm_head.", "language_model.lm_head."),
        ("lm_head.", "language_model.lm_head."),
        ("model.vision_tower.vision_model.", f"encoders.{IMAGE}.model."),
        ("model.vision_tower.", f"encoders.{IMAGE}.model."),
        ("vision_tower.vision_model.", f"encoders.{IMAGE}.model."),  # transformers < 5.6 nested the tower
        ("vision_tower.", f"encoders.{IMAGE}.model."),
        ("model.multi_modal_projector.", f"projectors.{IMAGE}."),
        ("multi_modal_projector.", f"projectors.{IMAGE}."),
    )
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def load_llava_weights(model: OmniForConditionalGeneration, state: dict[str, torch.Tensor]) -> None:
    """Copy LLaVA checkpoint tensors into `model`; raises on any weight left over or left out."""
    lm = model.language_model
    mapped, unknown = {}, []
    for key, tensor in state.items():
        name = omnifuse_key(key, lm.base_model_prefix)
        if name is None:
            unknown.append(key)
        else:
            mapped[name] = tensor
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if lm.config.tie_word_embeddings:
        missing = [key for key in missing if key != "language_model.lm_head.weight"]
        lm.tie_weights()
    problems = [f"unknown checkpoint keys {unknown[:5]}"] if unknown else []
    problems += [f"checkpoint lacks {missing[:5]}"] if missing else []
    problems += [f"checkpoint keys with no place in the model {unexpected[:5]}"] if unexpected else []
    if problems:
        raise FolderError("LLaVA weights do not fit the rebuilt model: " + "; ".join(problems))
