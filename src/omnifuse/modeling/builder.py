"""`from_components`: compose any encoder(s) with any causal LM from configs, folders or hub ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedConfig

from omnifuse.config import KINDS, ModalitySpec, OmniConfig, check_modality_name, encoder_config_from_dict
from omnifuse.errors import ModalityError
from omnifuse.modeling.encoders import load_pretrained_encoder, probe_encoder, select_encoder_config

ComponentSource = str | Path | dict | PreTrainedConfig
# Keys that make a dict a modality spec rather than an encoder config (which has `model_type`).
SPEC_MARKERS = ("kind", "encoder", "shares_encoder_with")


def as_config(source: ComponentSource) -> PreTrainedConfig:
    if isinstance(source, PreTrainedConfig):
        return source
    if isinstance(source, dict):
        return encoder_config_from_dict(source)
    return AutoConfig.from_pretrained(str(source))


def is_checkpoint(source: Any) -> bool:
    """A folder or hub id whose weights should be loaded (configs and dicts build fresh weights)."""
    return isinstance(source, (str, Path))


def projector_for(projector: str | dict, name: str) -> dict[str, Any]:
    """`projector` is one spec for every modality ("mlp", {"type": ...}) or a map modality -> spec."""
    if isinstance(projector, dict) and "type" not in projector:
        projector = projector.get(name, "mlp")
    return {"type": projector} if isinstance(projector, str) else dict(projector)


def as_spec_fields(name: str, source: Any) -> dict[str, Any]:
    """A modality given as a component (`image=cfg`), a spec dict, or `True` (video: share the image encoder)."""
    if source is True or (name == "video" and source == "image"):
        return {"kind": "video", "shares_encoder_with": "image"}
    if isinstance(source, dict) and any(key in source for key in SPEC_MARKERS):
        return dict(source)
    return {"encoder": source}


def infer_kind(name: str, encoder_source: Any) -> str:
    """A modality named after a kind has that kind; otherwise an encoder that reads pixels is image-like."""
    if name in KINDS:
        return name
    config = as_config(encoder_source)
    if getattr(config, "vision_config", None) is not None:
        return "image"
    if probe_encoder(config).main_input_name == "pixel_values":
        return "image"
    raise ModalityError(
        f"modality {name!r}: give its kind ({sorted(KINDS)}), e.g. {{'kind': 'sequence', 'encoder': ...}}"
    )


def modality_specs(
    sources: dict[str, Any], projector: str | dict, options: dict[str, dict]
) -> tuple[dict[str, ModalitySpec], dict[str, Any]]:
    """Specs per modality, plus the encoder modules loaded from checkpoints (to copy weights from)."""
    specs, loaded = {}, {}
    for name, source in sources.items():
        fields = {"projector": projector_for(projector, name), **options.get(check_modality_name(name), {})}
        fields |= as_spec_fields(name, source)
        owner = fields.get("shares_encoder_with")
        if owner is not None:
            if owner not in specs:
                raise ModalityError(f"{name} shares the encoder of {owner!r}, so a modality {owner!r} must come first")
            specs[name] = ModalitySpec(**{"kind": name if name in KINDS else specs[owner].kind, **fields})
            continue
        encoder_source = fields.pop("encoder")
        kind = fields.pop("kind", None) or infer_kind(name, encoder_source)
        if kind not in KINDS:
            raise ModalityError(f"modality {name!r}: kind must be one of {sorted(KINDS)}, got {kind!r}")
        if is_checkpoint(encoder_source):
            loaded[name], encoder_config = load_pretrained_encoder(str(encoder_source), kind)
        else:
            encoder_config = select_encoder_config(as_config(encoder_source), kind)
        specs[name] = ModalitySpec(kind=kind, encoder=encoder_config.to_dict(), **fields)
    return specs, loaded


def assign_placeholder_ids(
    specs: dict[str, ModalitySpec], vocab_size: int, tokenizer=None, placeholder_token_ids: dict | None = None
) -> int:
    """Give each modality a placeholder token id; returns the vocabulary size the LM needs."""
    if tokenizer is not None:
        missing = [s.placeholder for s in specs.values() if s.placeholder not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        for spec in specs.values():
            spec.placeholder_token_id = tokenizer.convert_tokens_to_ids(spec.placeholder)
        return max(vocab_size, len(tokenizer))
    next_id = vocab_size
    for name, spec in specs.items():
        given = (placeholder_token_ids or {}).get(name)
        if given is None:
            given, next_id = next_id, next_id + 1
        spec.placeholder_token_id = given
    return max(vocab_size, next_id, *(s.placeholder_token_id + 1 for s in specs.values()))


def compose(
    model_class,
    text: ComponentSource,
    sources: dict[str, Any],
    projector: str | dict = "mlp",
    *,
    tokenizer=None,
    placeholder_token_ids: dict[str, int] | None = None,
    modality_options: dict[str, dict] | None = None,
):
    """Build the composite from a text component and named modality sources; see `from_components`."""
    specs, loaded_encoders = modality_specs(sources, projector, modality_options or {})
    unknown = set(modality_options or {}) - set(specs)
    if unknown:
        raise ModalityError(f"modality_options for absent modalities: {sorted(unknown)}")
    for name, spec in specs.items():
        spec.placeholder = spec.placeholder or f"<{name}>"
    lm = AutoModelForCausalLM.from_pretrained(str(text)) if is_checkpoint(text) else None
    text_config = lm.config if lm is not None else as_config(text)
    vocab = assign_placeholder_ids(specs, text_config.vocab_size, tokenizer, placeholder_token_ids)
    if lm is not None and vocab != text_config.vocab_size:
        lm.resize_token_embeddings(vocab, mean_resizing=False)
    text_config.vocab_size = vocab
    if tokenizer is not None:
        # The tokenizer is the source of truth for special ids, so generation stops at its turn end.
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(tokenizer, name) is not None:
                setattr(text_config, name, getattr(tokenizer, name))
    config = OmniConfig(text_config=text_config, modalities={n: s.to_dict() for n, s in specs.items()})
    model = model_class(config)
    if lm is not None:
        model.language_model.load_state_dict(lm.state_dict())
    for name, encoder in loaded_encoders.items():
        model.encoders[name].model.load_state_dict(encoder.state_dict())
    return model


__all__ = ["compose", "modality_specs"]
