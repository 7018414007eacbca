"""Training recipes: a YAML file validated by pydantic, plus dotted `key=value` overrides.

An unknown key is an error that names where it is and the closest valid key; a bad value names the
key and what was expected. Both raise :class:`RecipeError`, which the CLI turns into exit code 2.
Relative paths in a recipe are taken from the current folder (where `omnifuse train` runs).

Example:
    >>> recipe = load_recipe("recipes/benchmark_align_sft.yaml", ["stages.0.lr.projectors=1e-3"])  # doctest: +SKIP
    >>> recipe.stages[0].lr.projectors  # doctest: +SKIP
    0.001
    >>> load_recipe("recipes/benchmark_align_sft.yaml", ["stages.0.lrr=1"])  # doctest: +SKIP
    RecipeError: recipes/benchmark_align_sft.yaml: stages.0.lrr: unknown key; did you mean 'lr'? ...
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from omnifuse.embeddings.settings import ContrastiveSection
from omnifuse.errors import OmnifuseInputError
from omnifuse.safety.yaml_bounds import load_yaml_bounded, read_text_bounded

StageName = Literal["align", "sft", "full", "contrastive"]


class RecipeError(OmnifuseInputError):
    """A recipe that cannot be used: `path` is the dotted key (e.g. "stages.0.lr"), `suggestion` a fix.

    Example:
        >>> str(RecipeError("unknown key", path="stages.0.lrr", suggestion="did you mean 'lr'?"))
        "stages.0.lrr: unknown key; did you mean 'lr'?"
    """

    def __init__(self, message: str, *, path: str = "", suggestion: str = "", source: str = "") -> None:
        self.message, self.path, self.suggestion, self.source = message, path, suggestion, source
        text = f"{path}: {message}" if path else message
        text = f"{text}; {suggestion}" if suggestion else text
        super().__init__(f"{source}: {text}" if source else text)


class Section(BaseModel):
    """Base of every recipe section: unknown keys are rejected (never silently ignored)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TokenizerBuild(Section):
    """Train a byte-level BPE on the training texts (for models built from configs, with no tokenizer)."""

    corpus_from_data: Literal[True] = True
    vocab_size: int = Field(512, ge=300, description="256 bytes + chat/placeholder tokens + merges")


class TokenizerSection(Section):
    """`tokenizer: PATH` (a folder) or `tokenizer: {build: {vocab_size: N}}`."""

    path: str | None = None
    build: TokenizerBuild | None = None

    @model_validator(mode="before")
    @classmethod
    def _path_shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> TokenizerSection:
        if (self.path is None) == (self.build is None):
            raise ValueError("give exactly one of a tokenizer folder (path) or `build: {vocab_size: N}`")
        return self


Component = str | dict[str, Any] | None


class ModelSection(Section):
    """Either `from_pretrained` (an omnifuse folder) or components composed into a new model.

    Components are local folders (weights are loaded) or config dicts with `model_type` (fresh weights).
    `image`, `audio`, `video` are shorthands; `modalities` names any other modality, as a component or
    a spec (`{kind: sequence, encoder: {...}, projector: mlp, processing: {...}}`).
    """

    from_pretrained: str | None = None
    text: Component = None
    image: Component = None
    audio: Component = None
    video: str | dict[str, Any] | bool | None = None
    modalities: dict[str, str | dict[str, Any]] = Field(default_factory=dict)
    projector: str | dict[str, Any] = "mlp"
    modality_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tokenizer: TokenizerSection | None = None
    chat_template: str | None = Field(None, description="'omnifuse' (built-in ChatML with media) or a Jinja string")
    grounding: dict[str, Any] | None = Field(
        None, description="a grounding head trained on `regions` of text parts: {layer: 1, bins: 4, weight: 1.0}"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        keys = ("text", "image", "audio", "video", "modalities", "tokenizer", "chat_template")
        components = [k for k in keys if getattr(self, k)]
        if self.from_pretrained and components:
            raise ValueError(f"from_pretrained loads a complete model; remove {components}")
        if not self.from_pretrained and not self.text:
            raise ValueError("set `from_pretrained: FOLDER` or the components (at least `text`)")
        return self


class GenerateSection(Section):
    """Train on the built-in benchmark generated on demand (`omnifuse.benchmark.dataset`): fresh records, no files."""

    modalities: str = "image,audio,video,mixed,text"
    records: int = Field(..., ge=1, description="dataset size; steps x batch_size sees every record once")
    seed: int = 0
    adapt_every: int | None = Field(
        None, ge=1, description="re-weight question types by the model's probe accuracy every N steps"
    )

    @model_validator(mode="after")
    def _known_modalities(self) -> GenerateSection:
        from omnifuse.benchmark.generate import question_types_for

        question_types_for(self.modalities)  # ValueError names the unknown ones
        return self


class DataSection(Section):
    train: str | None = None
    generate: GenerateSection | None = None
    eval: str | None = None
    media_dir: str | None = None
    format: Literal["messages", "llava", "sharegpt"] | None = None
    strict: bool = False
    max_length: int | None = Field(None, ge=2)
    packing: bool = False
    num_workers: int = Field(0, ge=0)
    cache_media: bool = Field(False, description="keep each record's decoded media in memory (small data, 0 workers)")

    @model_validator(mode="after")
    def _packing_needs_length(self) -> DataSection:
        if self.packing and self.max_length is None:
            raise ValueError("packing needs max_length (the packed row length)")
        return self

    @model_validator(mode="after")
    def _one_train_source(self) -> DataSection:
        if (self.train is None) == (self.generate is None):
            raise ValueError("give exactly one of `train` (a dataset file) and `generate` (the built-in benchmark)")
        if self.generate is not None and self.cache_media:
            raise ValueError("cache_media keeps every record's media, but a generated dataset never repeats one")
        if self.generate is not None and self.generate.adapt_every and self.num_workers:
            raise ValueError("generate.adapt_every needs num_workers: 0 (a worker would keep its own copy of the mix)")
        return self


class LearningRates(Section):
    """Peak learning rate per part group; a group that is frozen in a stage ignores its rate."""

    encoders: float = Field(1e-5, ge=0)
    projectors: float = Field(1e-3, ge=0)
    language_model: float = Field(2e-5, ge=0)


class LoraSection(Section):
    """LoRA on the language model only: `target_modules` are layer names matched inside it."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1)


def _lora_shape(value: Any) -> str:
    return "dict[str,LoraSection]" if is_per_modality_lora(value) else "LoraSection"


# One adapter (`lora: {r: 8}`) or one per modality (`lora: {image: {r: 16}, audio: {...}}`), told apart by keys.
StageLora = Annotated[
    Annotated[LoraSection, Tag("LoraSection")] | Annotated[dict[str, LoraSection], Tag("dict[str,LoraSection]")],
    Discriminator(_lora_shape),
]


def is_per_modality_lora(value: Any) -> bool:
    """`lora: {image: {...}, audio: {...}}` (keys are modality names, not LoraSection fields)."""
    if isinstance(value, LoraSection):
        return False
    return isinstance(value, dict) and bool(value) and not set(value) & set(LoraSection.model_fields)


class StageSection(Section):
    """One training stage: `name` picks the parts that train (align: projectors; sft: projectors + LM;
    full: everything); `train` / `freeze` add or remove parts by name (`encoder.depth`, `encoders`,
    `projector.imu`, `language_model`; `encoders.depth` is accepted for `encoder.depth`)."""

    name: StageName
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, ge=1)
    lr: LearningRates = Field(default_factory=LearningRates)
    lora: StageLora | None = Field(None, description="one adapter for every sample, or one per modality name")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    decay_ratio: float | None = Field(None, gt=0, le=1, description="warmup-stable-decay: cosine over the last share")
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1, description="samples per device per micro-batch")
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    eval_every: int | None = Field(None, ge=1)
    train: list[str] = Field(default_factory=list)
    freeze: list[str] = Field(default_factory=list)
    contrastive: ContrastiveSection | None = Field(None, description="settings of a `contrastive` stage")

    @model_validator(mode="after")
    def _check(self) -> StageSection:
        if self.epochs is None and self.max_steps is None:
            raise ValueError("give `epochs` or `max_steps` (max_steps caps epochs when both are set)")
        if self.lora is not None and self.name == "align":
            raise ValueError("align trains the projectors only; LoRA adapts the language model (use sft or full)")
        if self.name == "contrastive" and (self.lora is not None or self.eval_every is not None):
            raise ValueError("a contrastive stage takes neither `lora` nor `eval_every`")
        if self.contrastive is not None and self.name != "contrastive":
            raise ValueError("`contrastive:` settings belong to a stage named contrastive")
        if self.decay_ratio is not None and self.warmup_ratio + self.decay_ratio > 1:
            raise ValueError(f"warmup_ratio + decay_ratio is {self.warmup_ratio + self.decay_ratio:g}; at most 1")
        return self


class CheckpointSection(Section):
    every: int | None = Field(50, ge=1, description="optimizer steps between checkpoints (also at stage end)")
    keep: int = Field(2, ge=1, description="complete checkpoints kept; older ones are deleted")


class Recipe(Section):
    model: ModelSection
    data: DataSection
    stages: list[StageSection] = Field(min_length=1)
    output_dir: str
    overwrite: bool = Field(False, description="allow a non-empty output_dir that is not this run's own output")
    seed: int = 0
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    distributed: str | None = Field(None, description="an accelerate config file (FSDP, DeepSpeed, ...)")
    checkpoints: CheckpointSection = Field(default_factory=CheckpointSection)
    log_every: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _contrastive_needs_pairs(self) -> Recipe:
        if self.data.generate is not None and any(stage.name == "contrastive" for stage in self.stages):
            raise ValueError(
                "a contrastive stage trains on (medium, caption) pairs; the generated benchmark asks questions"
            )
        return self

    def resolved_dtype(self, on_accelerator: bool) -> str:
        """float32 on CPU (bfloat16 there is ~400x slower), bfloat16 on accelerators, unless set."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if on_accelerator else "float32"


# -- loading --


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe, apply dotted `key=value` overrides (values parsed as YAML), validate.

    Example:
        >>> recipe = load_recipe("recipe.yaml", ["output_dir=runs/try2", "stages.1.lora.r=16"])  # doctest: +SKIP
    """
    source = str(path)
    try:
        text = read_text_bounded(path, source)
    except OSError as err:
        raise RecipeError(f"cannot read the recipe: {err.strerror or err}", source=source) from None
    data = parse_yaml(text, source)
    for override in overrides:
        apply_override(data, override, source)
    return validate_recipe(data, source)


def parse_yaml(text: str, source: str = "") -> dict[str, Any]:
    try:
        data = load_yaml_bounded(text, source)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise RecipeError(f"invalid YAML: {getattr(err, 'problem', None) or err}", path=where, source=source) from None
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe is a mapping of sections, got {type(data).__name__}", source=source)
    return data


def apply_override(data: dict[str, Any], override: str, source: str = "") -> None:
    """Set `a.b.0.c=value` in the raw recipe dict; missing mapping levels are created."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {override!r} is not key=value (e.g. stages.0.lr.projectors=1e-3)", source=source)
    parts = key.strip().split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(f"no list item {part!r} (the list has {len(node)})", path=where, source=source)
            if last:
                node[int(part)] = _yaml_value(raw)
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = _yaml_value(raw)
            node = node.setdefault(part, {}) if not last else node[part]
        else:
            raise RecipeError(f"cannot set a key inside a {type(node).__name__}", path=where, source=source)


def _yaml_value(raw: str) -> Any:
    # YAML 1.1 reads "1e-3" as a string; pydantic turns it into a float where a float is expected.
    try:
        return load_yaml_bounded(raw, "override")
    except yaml.YAMLError:
        return raw


def validate_recipe(data: dict[str, Any], source: str = "") -> Recipe:
    """Check unknown keys first (with suggestions), then types and values via pydantic."""
    check_unknown_keys(data, Recipe, "", source)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise _from_validation_error(err, source) from None
    for i, stage in enumerate(recipe.stages):
        if isinstance(stage.lora, dict) and recipe.data.packing:
            raise RecipeError(
                "per-modality LoRA adapters are switched per row, and a packed row mixes samples",
                path=f"stages.{i}.lora",
                suggestion="set data.packing: false",
                source=source,
            )
        if stage.eval_every and not recipe.data.eval:
            raise RecipeError(
                "needs an eval set", path=f"stages.{i}.eval_every", suggestion="set data.eval", source=source
            )
    return recipe


def check_unknown_keys(data: Any, model: type[BaseModel], path: str, source: str = "") -> None:
    """Raise on the first key that `model` does not define, suggesting the closest valid one."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else ""
            valid = f"valid keys here: {', '.join(fields)}"
            raise RecipeError("unknown key", path=where, suggestion=f"{hint} {valid}".strip(), source=source)
        nested, is_list = _nested_model(fields[key].annotation)
        if nested is None:
            continue
        if nested is LoraSection and is_per_modality_lora(value):
            for name, item in value.items():
                check_unknown_keys(item, LoraSection, f"{where}.{name}", source)
            continue
        items = enumerate(value) if is_list and isinstance(value, list) else [(None, value)]
        for index, item in items:
            check_unknown_keys(item, nested, where if index is None else f"{where}.{index}", source)


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section class inside an annotation like `list[StageSection]` or `LoraSection | None`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _nested_model(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if origin is list:
        inner, _ = _nested_model(typing.get_args(annotation)[0])
        return inner, True
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner, is_list = _nested_model(arg)
            if inner is not None:
                return inner, is_list
    return None, False


def _is_type_tag(part: Any) -> bool:
    # pydantic puts union member names ("LoraSection", "dict[str,LoraSection]") into error locations.
    return isinstance(part, str) and (part[:1].isupper() or part.startswith("dict["))


def _from_validation_error(err: ValidationError, source: str) -> RecipeError:
    first = err.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"] if not _is_type_tag(part))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("value_error", "missing", "assertion_error"):
        message = f"{message} (got {first.get('input')!r:.60})"
    more = len(err.errors()) - 1
    return RecipeError(
        message, path=path, suggestion=f"{more} more problem(s) after this one" if more else "", source=source
    )


__all__ = ["Recipe", "RecipeError", "StageSection", "LoraSection", "load_recipe", "validate_recipe"]
