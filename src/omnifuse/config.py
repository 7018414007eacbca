"""OmniConfig: a causal LM config plus any number of *named* modalities, each of a *kind*.

A modality is data, not code: its kind (how its media are read and laid out), the encoder's config,
which hidden layer(s) to take, whether to drop the CLS token, the projector spec, the placeholder
token and processing options. The name drives everything downstream: the content part type
(`{"type": "depth", ...}`), the placeholder (`<depth>`), the batch key (`depth_values`) and the
part names training stages use (`encoder.depth`). Adding an encoder family or a modality is config.

Example:
    >>> from transformers import LlamaConfig, SiglipVisionConfig
    >>> config = OmniConfig(
    ...     text_config=LlamaConfig(hidden_size=64, num_hidden_layers=2).to_dict(),
    ...     modalities={"depth": ModalitySpec(kind="image", encoder=SiglipVisionConfig().to_dict()).to_dict()},
    ... )
    >>> config.modality_specs()["depth"].placeholder, config.modality_specs()["depth"].batch_key
    ('<depth>', 'depth_values')
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from omnifuse.errors import ModalityError


@dataclass(frozen=True)
class ModalityKind:
    """How media of one kind are read and laid out; the table below is the only place kinds are listed.

    `layout` tells projectors how encoder tokens are arranged ("grid": a square patch grid, "sequence":
    time steps); `tower` is the sub-config of a full checkpoint (CLIP, Qwen2-Audio, ...) that holds an
    encoder of this kind.
    """

    name: str
    layout: str
    tower: str | None
    description: str


KINDS: dict[str, ModalityKind] = {
    kind.name: kind
    for kind in (
        ModalityKind("image", "grid", "vision_config", "still images: resized crops, optional tiles"),
        ModalityKind("video", "grid", "vision_config", "frames sampled from a video, each preceded by its timestamp"),
        ModalityKind("audio", "sequence", "audio_config", "decoded audio: log-mel or waveform windows"),
        ModalityKind("sequence", "sequence", None, "a float array (time, channels) from .npy/.npz/.csv, in windows"),
    )
}
# The three standard modality names keep transformers' input names, so LLaVA-style code keeps working.
STANDARD_BATCH_KEYS = {"image": "pixel_values", "video": "pixel_values_videos"}
SELECT_STRATEGIES = ("full", "default")
# How a modality's features reach the LM: at placeholder tokens, or through gated cross-attention blocks.
FUSIONS = ("placeholder", "cross_attention")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Names a modality may not take: they are text, OpenAI part spellings or LM inputs.
RESERVED_NAMES = ("text", "input_ids", "attention_mask", "labels", "position_ids")


@dataclass
class ModalitySpec:
    """How one named modality enters the LM: kind, encoder, feature selection, projector, placeholder.

    `encoder` is the encoder's config as a dict (with `model_type`); it is None when
    `shares_encoder_with` names another modality (video reuses the image encoder by default).
    `select_strategy` follows transformers' LLaVA: "default" drops the first (CLS) token, "full" keeps all.
    `fusion` "placeholder" scatters features into the placeholder tokens; "cross_attention" feeds them
    through gated cross-attention blocks before every `cross_attention_every`-th LM layer (one marker
    token per unit stays in the text; see `modeling/cross_attention.py`).
    `placeholder` (default `<name>`) and `batch_key` (default `name_values`; transformers' names for the
    standard image/video/audio) are filled in by `OmniConfig`.
    `temporal_merge` (video only) makes one unit of `k` consecutive frames: each token holds the same
    cell in all `k` frames side by side (Qwen2-VL's temporal patch), so what changes over time is
    inside one token; the processor repeats a clip's last frame up to a multiple of `k`.
    """

    kind: str
    encoder: dict[str, Any] | None = None
    shares_encoder_with: str | None = None
    feature_layer: int | list[int] = -1
    select_strategy: str = "full"
    projector: dict[str, Any] = field(default_factory=lambda: {"type": "mlp"})
    placeholder: str = ""
    placeholder_token_id: int | None = None
    batch_key: str = ""
    processing: dict[str, Any] = field(default_factory=dict)
    fusion: str = "placeholder"
    cross_attention_every: int = 1
    temporal_merge: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModalityError(f"modality kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if self.select_strategy not in SELECT_STRATEGIES:
            raise ModalityError(f"select_strategy must be one of {SELECT_STRATEGIES}, got {self.select_strategy!r}")
        if self.fusion not in FUSIONS:
            raise ModalityError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not isinstance(self.cross_attention_every, int) or self.cross_attention_every < 1:
            raise ModalityError(f"cross_attention_every must be an integer >= 1, got {self.cross_attention_every!r}")
        if not isinstance(self.temporal_merge, int) or self.temporal_merge < 1:
            raise ModalityError(f"temporal_merge must be an integer >= 1, got {self.temporal_merge!r}")
        if self.temporal_merge > 1 and self.kind != "video":
            raise ModalityError(f"temporal_merge merges video frames; a {self.kind} modality has none")
        if (self.encoder is None) == (self.shares_encoder_with is None):
            raise ModalityError("a modality needs exactly one of `encoder` or `shares_encoder_with`")
        if isinstance(self.feature_layer, tuple):
            self.feature_layer = list(self.feature_layer)
        if isinstance(self.projector, str):
            self.projector = {"type": self.projector}

    @property
    def num_feature_layers(self) -> int:
        return 1 if isinstance(self.feature_layer, int) else len(self.feature_layer)

    @property
    def mask_key(self) -> str:
        """The batch key of the valid-frame mask that windowed kinds (audio, sequence) send along."""
        return f"{self.batch_key}_mask"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModalitySpec:
        return dataclass_from_dict(cls, data)


def dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a dataclass from its dict; an unknown key is an error (with the valid ones), never dropped."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModalityError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(known)}")
    return cls(**data)


def encoder_config_from_dict(data: dict[str, Any]) -> PreTrainedConfig:
    """Rebuild a transformers config object from its dict (which carries `model_type`)."""
    data = dict(data)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ModalityError("an encoder config dict needs a `model_type` (e.g. 'siglip_vision_model')")
    return AutoConfig.for_model(model_type, **data)


def check_modality_name(name: Any) -> str:
    """A modality name must be a short lowercase identifier that no part spelling or LM input uses."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModalityError(f"modality name {name!r} must match {_NAME.pattern} (e.g. 'depth', 'left_camera')")
    if name in RESERVED_NAMES or name.startswith("input_") or name.endswith("_url"):
        raise ModalityError(f"modality name {name!r} is reserved (text, LM inputs, input_* and *_url part types)")
    return name


class OmniConfig(PreTrainedConfig):
    """Composite config: `text_config` (any causal LM) + `modalities` (name -> ModalitySpec dict).

    Specs are parsed once (`modality_specs()` returns the cached objects); to change a modality,
    assign a new `modalities` dict rather than editing the nested dicts in place.
    """

    model_type = "omnifuse"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    modalities: dict | None = None
    tie_word_embeddings: bool = False
    grounding: dict | None = None  # a grounding head's settings (omnifuse.modeling.grounding); None: no head

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.modalities = {name: spec.to_dict() for name, spec in resolve_modalities(self.modalities).items()}
        if self.text_config.tie_word_embeddings:
            self.tie_word_embeddings = True

    def modality_specs(self) -> dict[str, ModalitySpec]:
        """name -> ModalitySpec, parsed once per `modalities` dict (this runs inside every forward)."""
        cache = self.__dict__.get("_spec_cache")
        if cache is None or cache[0] is not self.modalities:
            cache = (self.modalities, {n: ModalitySpec.from_dict(v) for n, v in (self.modalities or {}).items()})
            self.__dict__["_spec_cache"] = cache
        return cache[1]

    def encoder_spec_for(self, name: str) -> ModalitySpec:
        """The spec that owns the encoder used by modality `name` (follows `shares_encoder_with`)."""
        return encoder_owner(self.modality_specs(), name)

    def media_keys(self) -> dict[str, str]:
        """Every batch key that carries media (masks included) -> the modality it belongs to."""
        keys = {}
        for name, spec in self.modality_specs().items():
            keys[spec.batch_key] = keys[spec.mask_key] = name
        return keys

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("_spec_cache", None)
        return out


def resolve_modalities(modalities: dict[str, Any] | None) -> dict[str, ModalitySpec]:
    """Parse and check named specs: valid names, shared encoders present, placeholders and batch keys
    filled in and unique. Used by `OmniConfig` and by the processor (which has no LM config)."""
    specs = {check_modality_name(name): _as_spec(value) for name, value in (modalities or {}).items()}
    for name, spec in specs.items():
        owner = spec.shares_encoder_with
        if owner and (owner not in specs or specs[owner].encoder is None):
            raise ModalityError(f"modality {name!r} shares the encoder of {owner!r}, which has none here")
        spec.placeholder = spec.placeholder or f"<{name}>"
    for name, spec in specs.items():
        spec.batch_key = spec.batch_key or default_batch_key(name, spec, specs)
    _check_unique(specs, "placeholder")
    _check_unique(specs, "batch_key")
    return specs


def encoder_owner(specs: dict[str, ModalitySpec], name: str) -> ModalitySpec:
    """The spec whose encoder modality `name` runs through (itself, or the one it shares)."""
    spec = specs[name]
    return specs[spec.shares_encoder_with] if spec.shares_encoder_with else spec


def default_batch_key(name: str, spec: ModalitySpec, specs: dict[str, ModalitySpec]) -> str:
    """`name_values`; the standard names keep transformers' keys (audio: its encoder's input name)."""
    if name in STANDARD_BATCH_KEYS and spec.kind == name:
        return STANDARD_BATCH_KEYS[name]
    if name == "audio" and spec.kind == "audio":
        from omnifuse.modeling.encoders import probe_encoder  # the encoder's input name, read off a meta forward

        owner = specs[spec.shares_encoder_with] if spec.shares_encoder_with else spec
        return probe_encoder(owner.encoder).main_input_name
    return f"{name}_values"


def _check_unique(specs: dict[str, ModalitySpec], attribute: str) -> None:
    seen: dict[str, str] = {}
    for name, spec in specs.items():
        value = getattr(spec, attribute)
        if value in seen:
            raise ModalityError(f"modalities {seen[value]!r} and {name!r} both use the {attribute} {value!r}")
        seen[value] = name


def _as_spec(value: ModalitySpec | dict[str, Any]) -> ModalitySpec:
    if isinstance(value, ModalitySpec):
        return dataclasses.replace(value)
    if not isinstance(value, dict):
        raise ModalityError(f"a modality spec must be a dict or ModalitySpec, got {type(value).__name__}")
    return ModalitySpec.from_dict(value)
