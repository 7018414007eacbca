"""OmniConfig: a causal LM config plus one described modality per media kind.

A modality is data, not code: the encoder's config, which hidden layer(s) to take, whether to
drop the CLS token, the projector spec and the placeholder token. Adding an encoder family is a
config entry.

Example:
    >>> from transformers import LlamaConfig, SiglipVisionConfig
    >>> config = OmniConfig(
    ...     text_config=LlamaConfig(hidden_size=64, num_hidden_layers=2).to_dict(),
    ...     modalities={"image": ModalitySpec(kind="image", encoder=SiglipVisionConfig().to_dict()).to_dict()},
    ... )
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

MEDIA_KINDS = ("image", "video", "audio")
DEFAULT_PLACEHOLDERS = {"image": "<image>", "video": "<video>", "audio": "<audio>"}
# Input tensor names follow transformers' conventions, so GenerationMixin drops them after prefill.
VISUAL_INPUT_NAMES = {"image": "pixel_values", "video": "pixel_values_videos"}
SELECT_STRATEGIES = ("full", "default")


@dataclass
class ModalitySpec:
    """How one media kind enters the LM: encoder, feature selection, projector, placeholder.

    `encoder` is the encoder's config as a dict (with `model_type`); it is None when
    `shares_encoder_with` names another modality (video reuses the image encoder by default).
    `select_strategy` follows transformers' LLaVA: "default" drops the first (CLS) token, "full" keeps all.
    """

    kind: str
    encoder: dict[str, Any] | None = None
    shares_encoder_with: str | None = None
    feature_layer: int | list[int] = -1
    select_strategy: str = "full"
    projector: dict[str, Any] = field(default_factory=lambda: {"type": "mlp"})
    placeholder: str = ""
    placeholder_token_id: int | None = None
    processing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in MEDIA_KINDS:
            raise ValueError(f"modality kind must be one of {MEDIA_KINDS}, got {self.kind!r}")
        if self.select_strategy not in SELECT_STRATEGIES:
            raise ValueError(f"select_strategy must be one of {SELECT_STRATEGIES}, got {self.select_strategy!r}")
        if (self.encoder is None) == (self.shares_encoder_with is None):
            raise ValueError("a modality needs exactly one of `encoder` or `shares_encoder_with`")
        if isinstance(self.feature_layer, tuple):
            self.feature_layer = list(self.feature_layer)
        if isinstance(self.projector, str):
            self.projector = {"type": self.projector}
        self.placeholder = self.placeholder or DEFAULT_PLACEHOLDERS[self.kind]

    @property
    def num_feature_layers(self) -> int:
        return 1 if isinstance(self.feature_layer, int) else len(self.feature_layer)

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
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(known)}")
    return cls(**data)


def encoder_config_from_dict(data: dict[str, Any]) -> PreTrainedConfig:
    """Rebuild a transformers config object from its dict (which carries `model_type`)."""
    data = dict(data)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ValueError("an encoder config dict needs a `model_type` (e.g. 'siglip_vision_model')")
    return AutoConfig.for_model(model_type, **data)


class OmniConfig(PreTrainedConfig):
    """Composite config: `text_config` (any causal LM) + `modalities` (name -> ModalitySpec dict)."""

    model_type = "omnifuse"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    modalities: dict | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        specs = {name: _as_spec(value) for name, value in (self.modalities or {}).items()}
        for name, spec in specs.items():
            if spec.shares_encoder_with and spec.shares_encoder_with not in specs:
                raise ValueError(
                    f"modality {name!r} shares the encoder of {spec.shares_encoder_with!r}, which is absent"
                )
        self.modalities = {name: spec.to_dict() for name, spec in specs.items()}
        if self.text_config.tie_word_embeddings:
            self.tie_word_embeddings = True

    def modality_specs(self) -> dict[str, ModalitySpec]:
        return {name: ModalitySpec.from_dict(value) for name, value in (self.modalities or {}).items()}

    def encoder_spec_for(self, name: str) -> ModalitySpec:
        """The spec that owns the encoder used by modality `name` (follows `shares_encoder_with`)."""
        specs = self.modality_specs()
        spec = specs[name]
        return specs[spec.shares_encoder_with] if spec.shares_encoder_with else spec


def _as_spec(value: ModalitySpec | dict[str, Any]) -> ModalitySpec:
    return value if isinstance(value, ModalitySpec) else ModalitySpec.from_dict(value)
