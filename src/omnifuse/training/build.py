"""What a recipe's `model` and `data` sections turn into: datasets, a tokenizer, a model and its processor.

Example:
    >>> train_set, eval_set = load_datasets(recipe.data)  # doctest: +SKIP
    >>> model, processor = build_model(recipe.model, train_set.corpus())  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from omnifuse.benchmark.dataset import BenchmarkDataset
from omnifuse.data.formats import DatasetFormatError, Record
from omnifuse.data.sources import MessagesDataset
from omnifuse.errors import FolderError
from omnifuse.modeling.builder import SPEC_MARKERS
from omnifuse.modeling.folder import load_omni_folder
from omnifuse.modeling.model import OmniForConditionalGeneration
from omnifuse.processing.processor import OmniProcessor
from omnifuse.processing.tokenizer import build_bpe_tokenizer, chat_template
from omnifuse.training.recipe import DataSection, ModelSection, RecipeError

SHORTHAND_MODALITIES = ("image", "video", "audio")  # ModelSection fields; any other name goes in `modalities`


def load_datasets(data: DataSection) -> tuple[MessagesDataset | BenchmarkDataset, MessagesDataset | None]:
    """Validate the train (and eval) files, or set up the generated benchmark; skipped records are reported on
    stderr, never dropped silently."""
    if data.generate is not None:
        spec = data.generate
        train = BenchmarkDataset(spec.records, spec.seed, spec.modalities, adapt=spec.adapt_every is not None)
    else:
        train = _load_one(data, data.train, "data.train")
    evaluation = _load_one(data, data.eval, "data.eval") if data.eval else None
    return train, evaluation


def _load_one(data: DataSection, path: str, key: str) -> MessagesDataset:
    try:
        dataset = MessagesDataset.from_path(path, media_dir=data.media_dir, fmt=data.format, strict=data.strict)
    except DatasetFormatError as err:
        raise RecipeError(str(err), path=key) from None
    if dataset.report and dataset.report.skipped:
        print(f"{key}: {dataset.report.format(max_skips=10)}", file=sys.stderr)
    if not len(dataset):
        raise RecipeError(f"{path} holds no usable record", path=key)
    return dataset


def corpus_texts(records: Iterable[Record]) -> Iterable[str]:
    """Every text part and the role of every message (the chat template writes it in every turn's header):
    what a tokenizer built from the data is trained on."""
    for record in records:
        for message in record.messages:
            if isinstance(message.get("role"), str):
                yield message["role"]
            content = message.get("content")
            if isinstance(content, str):
                yield content
                continue
            for part in content or []:
                if isinstance(part, dict) and part.get("type") == "text":
                    yield str(part.get("text", ""))


def build_model(section: ModelSection, records: list[Record]) -> tuple[OmniForConditionalGeneration, OmniProcessor]:
    """Load an omnifuse folder, or compose the components (config dicts build fresh weights).

    Example:
        >>> model, processor = build_model(ModelSection(text="/models/SmolLM2-135M-Instruct",
        ...                                             image="/models/siglip-base-patch16-224"), [])  # doctest: +SKIP
    """
    model, processor = _composed_or_loaded(section, records)
    if section.grounding is not None:
        try:
            model.enable_grounding(section.grounding)
        except (TypeError, ValueError) as err:
            raise RecipeError(str(err), path="model.grounding") from None
    return model, processor


def _composed_or_loaded(
    section: ModelSection, records: list[Record]
) -> tuple[OmniForConditionalGeneration, OmniProcessor]:
    if section.from_pretrained:
        return load_pretrained(section.from_pretrained)
    tokenizer = build_tokenizer(section, records)
    text = _checked_component(_with_tokenizer_ids(section.text, tokenizer), "model.text")
    shorthands = {name: getattr(section, name) for name in SHORTHAND_MODALITIES if getattr(section, name) is not None}
    modalities = {
        name: _checked_modality(source, f"model.{'' if name in shorthands else 'modalities.'}{name}")
        for name, source in (shorthands | section.modalities).items()
    }
    try:
        model = OmniForConditionalGeneration.from_components(
            text=text,
            modalities=modalities,
            projector=section.projector,
            tokenizer=tokenizer,
            modality_options=section.modality_options,
        )
    except (ValueError, OSError) as err:
        raise RecipeError(f"cannot build the model: {err}", path="model") from None
    model = model.to(torch.float32)
    return model, OmniProcessor.from_model_config(model.config, tokenizer)


def load_pretrained(folder: str) -> tuple[OmniForConditionalGeneration, OmniProcessor]:
    """An omnifuse folder (model + processor), in float32 (the training master copy)."""
    try:
        model, processor = load_omni_folder(folder, dtype=torch.float32)
    except (OSError, FolderError) as err:
        raise RecipeError(str(err), path="model.from_pretrained") from None
    return model, processor


def build_tokenizer(section: ModelSection, records: list[Record]):
    """The recipe's tokenizer folder, one trained on the data, or the text model's own (a folder)."""
    spec = section.tokenizer
    if spec is not None and spec.build is not None:
        tokenizer = build_bpe_tokenizer(corpus_texts(records), vocab_size=spec.build.vocab_size)
    else:
        folder = spec.path if spec is not None else section.text
        key = "model.tokenizer" if spec is not None else "model.text"
        if not isinstance(folder, str):
            raise RecipeError(
                "a text model given as a config has no tokenizer",
                path="model.tokenizer",
                suggestion="set `tokenizer: FOLDER` or `tokenizer: {build: {vocab_size: 512}}`",
            )
        tokenizer = _load_tokenizer(folder, key)
    if section.chat_template is not None:
        tokenizer.chat_template = chat_template() if section.chat_template == "omnifuse" else section.chat_template
    elif not tokenizer.chat_template:
        tokenizer.chat_template = chat_template()  # a base LM without one gets the built-in ChatML template
    return tokenizer


def _load_tokenizer(folder: str, key: str):
    if not Path(folder).is_dir():
        raise RecipeError(f"{folder} is not a folder (no network here: give a local folder)", path=key)
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise RecipeError(f"no tokenizer in {folder}: {err}", path=key) from None


def _with_tokenizer_ids(text: Any, tokenizer) -> Any:
    """A text config dict gets the tokenizer's vocabulary size and special ids unless it sets them."""
    if not isinstance(text, dict):
        return text
    defaults = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    return {**defaults, **text}


def _checked_modality(value: Any, key: str) -> Any:
    """A modality is a component, `True` (video: share the image encoder) or a spec whose encoder is one."""
    if value is True or (key == "model.video" and value == "image"):
        return value
    if isinstance(value, dict) and any(marker in value for marker in SPEC_MARKERS):
        if value.get("encoder") is not None:
            return {**value, "encoder": _checked_component(value["encoder"], f"{key}.encoder")}
        return value
    return _checked_component(value, key)


def _checked_component(value: Any, key: str) -> Any:
    """Folders must exist here (no network); config dicts must say which family they are."""
    if isinstance(value, dict) and "model_type" not in value:
        raise RecipeError("a component config needs `model_type` (e.g. llama, siglip_vision_model)", path=key)
    if isinstance(value, str) and not Path(value).is_dir():
        raise RecipeError(f"{value} is not a folder (no network here: give a local folder)", path=key)
    return value


__all__ = ["build_model", "build_tokenizer", "corpus_texts", "load_datasets", "load_pretrained"]
