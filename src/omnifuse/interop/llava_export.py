"""Export to transformers' LLaVA format: what fits, how the weights are named, and the writer.

A model fits LLaVA when its one modality is an image read by a CLIP or SigLIP vision tower
through an `mlp` projector, with no tiling, and its LM is a plain `lm_head` on top of the base model
that `AutoModel` builds. Everything else is listed by :func:`check_llava_compatible`, one reason each.

Weights are written with the key layout of the llava-hf checkpoints on the Hub
(`language_model.model.*`, `language_model.lm_head.*`, `vision_tower.vision_model.*`,
`multi_modal_projector.*`): transformers 5.x maps it onto its in-memory names when loading, and vLLM's
LLaVA loader reads it directly (its CLIP/SigLIP towers keep the `vision_model` level).

Example:
    >>> check_llava_compatible(model)
    []
    >>> export_llava(model, "out/llava", processor=processor)["image_tokens"]
    16
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, LlavaConfig, LlavaProcessor, PreTrainedConfig

from omnifuse.config import ModalitySpec, OmniConfig
from omnifuse.errors import OmnifuseInputError, OutputPathError
from omnifuse.interop.fusion_checks import fusion_problems, mixture_names
from omnifuse.modeling.encoders import probe_encoder
from omnifuse.modeling.folder import check_omni_folder, is_adapter_folder, load_omni_folder
from omnifuse.modeling.model import OmniForConditionalGeneration, check_omnifuse_config
from omnifuse.modeling.tokens import unit_token_count
from omnifuse.processing.image import to_transformers_image_processor
from omnifuse.processing.processor import PROCESSOR_FILE, OmniProcessor
from omnifuse.safety.model_files import check_model_folder_files
from omnifuse.safety.paths import check_output_dir, make_output_dir

LLAVA_VISION_TOWERS = ("clip_vision_model", "siglip_vision_model")
# Activations known to both transformers' ACT2FN and vLLM's get_act_fn (the projector runs in both).
LLAVA_PROJECTOR_ACTIVATIONS = ("gelu", "gelu_fast", "gelu_new", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu")
# Config fields with which an LM's ForCausalLM head rescales logits; LLaVA's head is a bare Linear.
LOGIT_MODIFIERS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
# On-disk prefixes (llava-hf layout) for each part of an omnifuse model.
LLAVA_LM, LLAVA_HEAD = "language_model.model.", "language_model.lm_head."
LLAVA_TOWER, LLAVA_PROJECTOR = "vision_tower.vision_model.", "multi_modal_projector."
MAX_SHARD_SIZE = "5GB"


class ExportError(OmnifuseInputError):
    """The model does not fit the target format; `problems` holds one reason per incompatibility."""

    def __init__(self, problems: list[str], target: str = "LLaVA"):
        self.problems = list(problems)
        super().__init__(f"cannot export as {target}:\n" + "\n".join(f"- {p}" for p in self.problems))


# -- compatibility --
def check_llava_compatible(model_or_config: Any) -> list[str]:
    """Every reason the model cannot become a transformers/vLLM LLaVA checkpoint; empty when it fits.

    Takes an `OmniForConditionalGeneration`, a peft model wrapping one, an `OmniConfig` or a saved
    model folder. LoRA is only detected on models and folders (a config has no adapters).

    Example:
        >>> check_llava_compatible(omni_model_with_whisper_and_perceiver)
        ["audio modality present ('audio'): LLaVA has an image path only", "projector 'perceiver' is not mlp"]
    """
    config, model = _resolve(model_or_config)
    problems = _modality_problems(config)
    image = _image_modality(config)
    if image is not None:
        problems += _image_problems(image[1])
    problems += _language_model_problems(config.text_config)
    problems += fusion_problems(config, model_or_config if not isinstance(model_or_config, OmniConfig) else None)
    if model is not None and not mixture_names(model):
        problems += _lora_problems(model)
    return problems


def _resolve(source: Any) -> tuple[OmniConfig, nn.Module | None]:
    if isinstance(source, OmniConfig):
        return source, None
    if isinstance(source, (str, Path)):
        if is_adapter_folder(source):
            return _resolve(_load_adapter(Path(source)))
        check_omnifuse_config(source)
        return OmniConfig.from_pretrained(str(source)), None
    base = source.get_base_model() if hasattr(source, "get_base_model") else source
    if not isinstance(base, OmniForConditionalGeneration):
        raise TypeError(f"expected an omnifuse model, OmniConfig or folder, got {type(source).__name__}")
    return base.config, source


def _image_modality(config: OmniConfig) -> tuple[str, ModalitySpec] | None:
    images = [(name, spec) for name, spec in config.modality_specs().items() if spec.kind == "image"]
    return images[0] if len(images) == 1 else None


def _modality_problems(config: OmniConfig) -> list[str]:
    specs = config.modality_specs()
    problems = [
        f"{spec.kind} modality present ({name!r}): LLaVA has an image path only"
        for name, spec in specs.items()
        if spec.kind != "image"
    ]
    images = [name for name, spec in specs.items() if spec.kind == "image"]
    if len(images) != 1:
        problems.append(f"{len(images)} image modalities {images}: LLaVA needs exactly one")
    return problems


def _image_problems(spec: ModalitySpec) -> list[str]:
    problems = []
    tower = spec.encoder["model_type"]
    if tower not in LLAVA_VISION_TOWERS:
        problems.append(f"vision tower {tower!r} is not {'/'.join(LLAVA_VISION_TOWERS)}")
    options = dict(spec.projector)
    kind = options.pop("type", "mlp")
    if kind != "mlp":
        problems.append(f"projector {kind!r} is not mlp")
    else:
        activation = options.pop("hidden_act", "gelu")
        options.pop("bias", None)
        if activation not in LLAVA_PROJECTOR_ACTIVATIONS:
            problems.append(
                f"mlp projector activation {activation!r} is not one of {', '.join(LLAVA_PROJECTOR_ACTIVATIONS)}"
            )
        if options:
            problems.append(f"mlp projector options {sorted(options)} have no LLaVA equivalent")
    if isinstance(spec.feature_layer, list):
        problems.append(f"feature_layer {spec.feature_layer} is a list: vLLM's LLaVA projects a single layer")
    tiles = spec.processing.get("max_tiles", 0)
    if tiles:
        problems.append(f"image tiling max_tiles={tiles} has no LLaVA equivalent (one {_side(spec)}px view per image)")
    if spec.placeholder_token_id is None:
        problems.append("the image placeholder has no token id: build the model with its tokenizer")
    return problems


def _side(spec: ModalitySpec) -> int:
    return probe_encoder(spec.encoder).input_shape[-1]


def _language_model_problems(text_config: PreTrainedConfig) -> list[str]:
    """LLaVA rebuilds the LM as `AutoModel(text_config)` + a bias-free `lm_head`; check that is the same model."""
    with torch.device("meta"):  # free: no memory, no weights; the config alone decides
        lm = AutoModelForCausalLM.from_config(text_config)
    family = text_config.model_type
    problems = []
    prefix = lm.base_model_prefix
    keys = list(lm.state_dict())
    head_keys = sorted(k for k in keys if not k.startswith(f"{prefix}."))
    if head_keys not in (["lm_head.weight"], []):
        problems.append(f"language model {family!r} has head weights {head_keys}; LLaVA has only lm_head.weight")
    with torch.device("meta"):
        base = AutoModel.from_config(text_config)
    if set(base.state_dict()) != {k[len(prefix) + 1 :] for k in keys if k.startswith(f"{prefix}.")}:
        problems.append(f"AutoModel builds {type(base).__name__} for {family!r}, not the base of {type(lm).__name__}")
    for name in LOGIT_MODIFIERS:
        value = getattr(text_config, name, None)
        if value not in (None, 1, 1.0):
            problems.append(f"language model {family!r} rescales its logits ({name}={value}); LLaVA's lm_head does not")
    return problems


def _lora_problems(model: nn.Module) -> list[str]:
    adapted = {name.split(".lora_")[0] for name, _ in model.named_parameters() if ".lora_" in name}
    if not adapted:
        return []
    return [f"LoRA adapters not merged ({len(adapted)} adapted layers): call merge_and_unload() first"]


# -- weights --
def llava_state_dict(model: OmniForConditionalGeneration) -> tuple[dict[str, torch.Tensor], bool]:
    """The model's tensors under llava-hf names; also says whether the output embedding stays tied.

    A tied LM keeps its tie only where transformers' LLaVA can re-tie it (`embed_tokens`); otherwise
    `lm_head.weight` is written out (as a copy: safetensors refuses shared storage).
    """
    name, _ = _image_modality(model.config)
    lm = model.language_model
    tied = _keeps_tie(lm)
    renames = {
        f"encoders.{name}.model.": LLAVA_TOWER,
        f"projectors.{name}.": LLAVA_PROJECTOR,
        f"language_model.{lm.base_model_prefix}.": LLAVA_LM,
        "language_model.lm_head.": LLAVA_HEAD,
    }
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("grounding_head."):  # a training-only head (modeling/grounding.py): inference never runs it
            continue
        prefix = next((p for p in renames if key.startswith(p)), None)
        if prefix is None:
            raise ExportError([f"weight {key!r} has no place in a LLaVA checkpoint"])
        if prefix == "language_model.lm_head." and tied:
            continue
        state[renames[prefix] + key[len(prefix) :]] = tensor.detach().contiguous()
    head = LLAVA_HEAD + "weight"
    if head in state and state[head].data_ptr() == state[LLAVA_LM + _embedding_name(lm) + ".weight"].data_ptr():
        state[head] = state[head].clone()
    return state, tied


def _embedding_name(lm: nn.Module) -> str:
    base = getattr(lm, lm.base_model_prefix)
    embedding = lm.get_input_embeddings()
    return next(name for name, module in base.named_modules() if module is embedding)


def _keeps_tie(lm: nn.Module) -> bool:
    # transformers' LlavaForConditionalGeneration ties lm_head to `model.language_model.embed_tokens` only.
    return bool(lm.config.tie_word_embeddings) and _embedding_name(lm) == "embed_tokens"


def write_safetensors(state: dict[str, torch.Tensor], out_dir: Path) -> list[str]:
    """Write `state` as model.safetensors, or as shards plus an index once it passes MAX_SHARD_SIZE."""
    split = split_torch_state_dict_into_shards(state, max_shard_size=MAX_SHARD_SIZE)
    for filename, keys in split.filename_to_tensors.items():
        save_file({key: state[key] for key in keys}, out_dir / filename, metadata={"format": "pt"})
    files = sorted(split.filename_to_tensors)
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        files.append("model.safetensors.index.json")
    return files


# -- config and processor --
def llava_config(model: OmniForConditionalGeneration, keep_tie: bool) -> LlavaConfig:
    """The `LlavaConfig` that rebuilds this model in transformers (and vLLM)."""
    _, spec = _image_modality(model.config)
    text = model.config.text_config.to_dict()
    text["architectures"] = [type(model.language_model).__name__]  # vLLM picks the LM class from it
    text["tie_word_embeddings"] = keep_tie
    projector = spec.projector
    return LlavaConfig(
        text_config=text,
        vision_config=dict(spec.encoder),
        image_token_index=spec.placeholder_token_id,
        image_seq_length=unit_token_count(spec, spec),
        projector_hidden_act=projector.get("hidden_act", "gelu"),
        multimodal_projector_bias=projector.get("bias", True),
        vision_feature_layer=spec.feature_layer,
        vision_feature_select_strategy=spec.select_strategy,
        tie_word_embeddings=keep_tie,
        architectures=["LlavaForConditionalGeneration"],
        dtype=str(model.dtype).removeprefix("torch."),
    )


def llava_processor(processor: OmniProcessor, name: str, spec: ModalitySpec) -> LlavaProcessor:
    """A `LlavaProcessor` that expands the placeholder to omnifuse's token count with the same pixels.

    LlavaProcessor counts (side // patch)**2 + num_additional_image_tokens, minus one for "default";
    the extra tokens are what the tower adds to the patch grid (CLIP's CLS: 1, SigLIP: 0).
    """
    settings = processor.items[name].settings
    patch = spec.encoder["patch_size"]
    extra = probe_encoder(spec.encoder).output_length - (settings.size // patch) ** 2
    return LlavaProcessor(
        image_processor=to_transformers_image_processor(settings),
        tokenizer=processor.tokenizer,
        patch_size=patch,
        vision_feature_select_strategy=spec.select_strategy,
        chat_template=processor.tokenizer.chat_template,
        image_token=spec.placeholder,
        num_additional_image_tokens=extra,
    )


# -- export --
def export_llava(
    model_dir_or_model: str | Path | nn.Module,
    out_dir: str | Path,
    processor: OmniProcessor | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write `out_dir` as a transformers LLaVA folder: config.json, safetensors, processor and tokenizer files.

    `model_dir_or_model` is a folder saved by omnifuse (its processor is loaded from it too), a LoRA
    adapter folder written by training (merged into its base), or a model; a peft model has its LoRA
    merged first (in place). Raises `ExportError` listing every incompatibility, `FolderError` for an
    incomplete model folder and `OutputPathError` for an output folder that is unsafe or not empty
    (unless `overwrite`); nothing is written before those checks pass.
    `AutoModelForImageTextToText` / `AutoProcessor` load the result with no omnifuse import.

    Example:
        >>> export_llava("runs/demo/model", "runs/demo/llava")
        {'format': 'llava', 'out_dir': 'runs/demo/llava', 'vision_tower': 'siglip_vision_model', ...}
    """
    out = Path(out_dir)
    reads = [model_dir_or_model] if isinstance(model_dir_or_model, (str, Path)) else []
    for folder in reads:
        if Path(folder).is_dir() and not is_adapter_folder(folder):
            check_omnifuse_config(folder)  # a LLaVA folder is named as such (import it), not as incomplete
        check_model_folder_files(folder, need_processor=processor is None)
    target = check_output_dir(out, what="--out", overwrite=overwrite, protected=reads)
    model, processor = _load_for_export(model_dir_or_model, processor)
    model, merged = _merge_lora(model)
    problems = check_llava_compatible(model)
    if problems:
        raise ExportError(problems)
    name, spec = _image_modality(model.config)
    _check_processor(processor, name, spec)
    make_output_dir(target, f"--out {out}")
    state, keep_tie = llava_state_dict(model)
    config = llava_config(model, keep_tie)
    try:
        files = _write_export(model, processor, config, state, out, (name, spec))
    except PermissionError as err:
        raise OutputPathError(f"--out {out}: cannot write ({err.strerror}: {err.filename})") from None
    return {
        "format": "llava",
        "out_dir": str(out),
        "vision_tower": spec.encoder["model_type"],
        "text_model": config.text_config.model_type,
        "image_token": spec.placeholder,
        "image_token_index": spec.placeholder_token_id,
        "image_tokens": config.image_seq_length,
        "parameters": sum(t.numel() for t in state.values()),
        "dtype": str(model.dtype).removeprefix("torch."),
        "tied_embeddings": keep_tie,
        "lora_merged": merged,
        "weight_files": files,
    }


def _write_export(model, processor, config, state, out: Path, image: tuple[str, ModalitySpec]) -> list[str]:
    config.save_pretrained(out)
    files = write_safetensors(state, out)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    hf_processor = llava_processor(processor, *image)
    hf_processor.save_pretrained(out)
    hf_processor.image_processor.save_pretrained(out)  # preprocessor_config.json, for tools that read only it
    return files


def _load_for_export(source: Any, processor: OmniProcessor | None) -> tuple[nn.Module, OmniProcessor]:
    if isinstance(source, (str, Path)):
        model, folder_processor = _load_folder(Path(source))
        processor = processor or folder_processor
    else:
        model = source
    if processor is None:
        raise ValueError(
            "export_llava needs the model's processor (tokenizer and image settings): pass processor=..., "
            f"or export a folder that holds {PROCESSOR_FILE} (OmniProcessor.save_pretrained)"
        )
    return model, processor


def _load_folder(folder: Path) -> tuple[nn.Module, OmniProcessor]:
    check_omni_folder(folder)
    if not is_adapter_folder(folder):
        problems = check_llava_compatible(folder)  # cheap: config only, before loading any weight
        if problems:
            raise ExportError(problems)
    # An adapter stays unmerged here: export_llava merges it once the config checks pass.
    return load_omni_folder(folder, merge_adapter=False)


def _load_adapter(folder: Path) -> nn.Module:
    from omnifuse.training.lora import load_with_adapter  # lazily: peft is slow to import

    return load_with_adapter(folder)


def _merge_lora(model: nn.Module) -> tuple[nn.Module, bool]:
    """Merge a peft model's adapters into its weights (in place); a plain model passes through."""
    if not hasattr(model, "merge_and_unload"):
        return model, False
    config = model.get_base_model().config  # refuse before touching any weight
    problems = check_llava_compatible(config) + fusion_problems(config, model)
    if problems:
        raise ExportError(problems)
    return model.merge_and_unload(), True


def _check_processor(processor: OmniProcessor, name: str, spec: ModalitySpec) -> None:
    ours = processor.specs.get(name)
    if ours is None or ours.placeholder_token_id != spec.placeholder_token_id or ours.encoder != spec.encoder:
        raise ValueError(
            f"the processor does not belong to this model: its {name!r} modality differs "
            "(build it with OmniProcessor.from_model_config(model.config, tokenizer))"
        )
