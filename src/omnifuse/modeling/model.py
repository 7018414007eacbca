"""OmniForConditionalGeneration: encoders -> projectors -> features scattered into a causal LM.

Media arrive under each modality's batch key (`pixel_values` for "image", `depth_values` for a
modality named "depth", ...), with a `<key>_mask` of valid frames for windowed kinds.

Example:
    >>> model = OmniForConditionalGeneration.from_components(
    ...     text=LlamaConfig(...), image=SiglipVisionConfig(...), projector="mlp")
    >>> out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from omnifuse.config import OmniConfig, encoder_config_from_dict
from omnifuse.errors import FolderError, ModalityError
from omnifuse.modeling.cross_attention import CrossAttentionFusion
from omnifuse.modeling.encoders import ModalityEncoder, build_encoder_module, probe_encoder
from omnifuse.modeling.fusion import scatter_features
from omnifuse.modeling.grounding import GroundingHead, GroundingSettings
from omnifuse.modeling.parts import PartsMixin
from omnifuse.modeling.projectors import build_projector, merge_frames
from omnifuse.modeling.routing import fusion_routing
from omnifuse.modeling.tokens import encoder_token_count, projector_layout, unit_token_count
from omnifuse.processing.grounding import GROUNDING_KEY


def check_omnifuse_config(folder: str | Path) -> None:
    """A local folder whose config.json is not an omnifuse model is refused, naming what to use instead."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return  # a hub id, or a missing file that transformers reports itself
    try:
        model_type = json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError) as err:
        raise FolderError(f"{path}: not valid JSON ({' '.join(str(err).split())[:120]})") from None
    if model_type == "omnifuse":
        return
    hint = (
        "import it with omnifuse.interop.llava.import_llava(folder)"
        if model_type == "llava"
        else "compose it with OmniForConditionalGeneration.from_components(text=..., image=...)"
    )
    raise FolderError(f"{folder} holds a {model_type!r} model, not an omnifuse model; {hint}")


class OmniPreTrainedModel(PreTrainedModel):
    config_class = OmniConfig
    config: OmniConfig
    base_model_prefix = "omni"
    input_modalities = ("image", "video", "audio", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _skip_keys_device_placement = ["past_key_values"]


class OmniForConditionalGeneration(PartsMixin, OmniPreTrainedModel, GenerationMixin):
    """A causal LM that reads media: one encoder + projector per modality, fused at placeholder tokens."""

    def __init__(self, config: OmniConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict()
        self.projectors = nn.ModuleDict()
        text_hidden = config.text_config.hidden_size
        for name, spec in config.modality_specs().items():
            if spec.encoder is not None:
                module = build_encoder_module(encoder_config_from_dict(spec.encoder))
                self.encoders[name] = ModalityEncoder(module, spec)
            owner = config.encoder_spec_for(name)
            in_dim = probe_encoder(owner.encoder).hidden_size * owner.num_feature_layers * spec.temporal_merge
            self.projectors[name] = build_projector(spec.projector, in_dim, text_hidden, projector_layout(spec.kind))
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.cross_attention = CrossAttentionFusion(config, self.language_model)  # empty without such modalities
        self.grounding_head = self._grounding_head(config.grounding) if config.grounding else None
        self.post_init()

    def _grounding_head(self, raw: dict) -> GroundingHead:
        settings = GroundingSettings.from_dict(raw, self.config.text_config.num_hidden_layers)
        if settings.attend_layer is not None:
            self.image_placeholder_id()  # raises without an image modality
            self.language_model.set_attn_implementation("eager")  # the attention kind that returns its weights
        return GroundingHead(settings, self.config.text_config.hidden_size)

    def image_placeholder_id(self) -> int:
        """The placeholder token of the first image-kind modality: grounded boxes are fractions of its picture."""
        for spec in self.config.modality_specs().values():
            if spec.kind == "image":
                return spec.placeholder_token_id
        raise ValueError("grounding.attend_layer looks at image tokens, and this model has no image modality")

    @property
    def grounding_settings(self) -> GroundingSettings | None:
        """The grounding head's settings (from the config), or None without a head."""
        return GroundingSettings(**self.config.grounding) if self.config.grounding else None

    def enable_grounding(self, raw: dict) -> None:
        """Add a grounding head with these settings (a head with other settings is replaced, one with the
        same kept); raises ValueError for bad settings."""
        head = self._grounding_head(raw)
        if self.grounding_head is not None and self.grounding_head.settings == head.settings:
            return
        self.grounding_head = head.to(self.get_input_embeddings().weight.device)
        self.config.grounding = head.settings.to_dict()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader, refusing a local folder that holds another model type (every weight
        would be left random with only a warning)."""
        check_omnifuse_config(pretrained_model_name_or_path)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    # -- embeddings (GenerationMixin and resize_token_embeddings go through these) --
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def _init_weights(self, module: nn.Module) -> None:
        # Encoders and the LM initialise themselves; projectors keep PyTorch's default init.
        return

    # -- media --
    def encoder_for(self, name: str) -> ModalityEncoder:
        spec = self.config.modality_specs()[name]
        return self.encoders[spec.shares_encoder_with or name]

    def encode_media(self, name: str, values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Project a modality's units (crops / frames / windows) into LM embeddings, valid rows only.

        Returns `(total_tokens, hidden)`: the rows that replace this modality's placeholders, in order.
        """
        spec = self.config.modality_specs()[name]
        owner = self.config.encoder_spec_for(name)
        encoder = self.encoder_for(name)
        values = values.to(self.dtype)
        features = merge_frames(encoder(values, mask), spec.temporal_merge)
        valid_in = [None] * features.shape[0] if mask is None else [int(n) for n in mask.sum(-1).tolist()]
        out_lengths = [unit_token_count(spec, owner, v) for v in valid_in]
        feature_lengths = torch.tensor([encoder_token_count(owner, v) for v in valid_in], device=features.device)
        projected = self.projectors[name](features, feature_lengths)
        return torch.cat([projected[i, :n] for i, n in enumerate(out_lengths)], dim=0)

    def embed_inputs(
        self, input_ids: torch.LongTensor, media: dict[str, torch.Tensor], strict: bool = True
    ) -> torch.Tensor:
        """Token embeddings with every modality's features scattered into its placeholder positions.

        `media` maps batch keys (`pixel_values`, `depth_values`, `..._mask`) to tensors. `strict=False`
        (decoding with a cache) lets placeholder ids without media pass as plain tokens: a model may
        generate one, and it has no medium behind it.
        """
        embeds = self.get_input_embeddings()(input_ids)
        for name, spec in self.config.modality_specs().items():
            placeholder_mask = input_ids == spec.placeholder_token_id
            values = media.get(spec.batch_key)
            if values is None:
                if strict and placeholder_mask.any():
                    raise ModalityError(
                        f"{name}: input_ids hold {int(placeholder_mask.sum())} placeholder tokens but no "
                        f"`{spec.batch_key}` was given"
                    )
                continue
            if spec.fusion == "cross_attention":
                continue  # its markers stay plain tokens; the features enter through cross-attention
            features = self.encode_media(name, values, media.get(spec.mask_key))
            embeds = scatter_features(embeds, placeholder_mask, features, modality=name)
        return embeds

    def split_media(self, kwargs: dict) -> dict[str, torch.Tensor]:
        """Pop every modality's batch keys out of `kwargs` (the rest goes to the LM); None values are dropped."""
        media_keys = self.config.media_keys()
        media = {key: kwargs.pop(key) for key in list(kwargs) if key in media_keys}
        return {key: value for key, value in media.items() if value is not None}

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Media come as keyword arguments under their modality's batch key: images `pixel_values`
        (units, 3, H, W), videos `pixel_values_videos` (frames, 3, H, W), audio `input_features`
        (windows, mels, frames) or `input_values` (windows, samples), any other modality `<name>_values`;
        windowed kinds add `<key>_mask` (valid frames per window). Other keywords go to the LM."""
        kwargs.pop(GROUNDING_KEY, None)  # the grounding head's targets: the trainer's loss reads them, not the LM
        media = self.split_media(kwargs)
        decoding = past_key_values is not None and past_key_values.get_seq_length() > 0
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or inputs_embeds")
            inputs_embeds = self.embed_inputs(input_ids, media, strict=not decoding)
        elif media:
            raise ValueError("media tensors need input_ids (to find the placeholders), not inputs_embeds")
        with fusion_routing(self, input_ids, media, past_key_values, decoding):  # cross-attention, modality LoRA
            return self.language_model(
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                inputs_embeds=inputs_embeds,
                labels=labels,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )

    def _validate_model_kwargs(self, model_kwargs: dict) -> None:
        # transformers checks kwargs against forward's signature; media keys are named by the config instead.
        media_keys = self.config.media_keys()
        super()._validate_model_kwargs({k: v for k, v in model_kwargs.items() if k not in media_keys})

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, **kwargs):
        """transformers' preparation, plus: media are encoded once, at prefill, and dropped afterwards."""
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and kwargs.get("use_cache", True):
            for key in self.config.media_keys():
                inputs.pop(key, None)
        return inputs

    @classmethod
    def from_components(
        cls,
        text,
        image=None,
        audio=None,
        video=None,
        modalities: dict | None = None,
        projector: str | dict = "mlp",
        **kwargs,
    ) -> OmniForConditionalGeneration:
        """Compose a model from a causal LM and any number of named modalities.

        Each component is a transformers config, a config dict (with `model_type`), a local folder
        or a hub id (folders and ids load their weights). `image=`, `audio=`, `video=` are shorthands
        for modalities of those names and kinds (`video=True` shares the image encoder). `modalities`
        maps any other name to a component, or to a spec dict `{"kind": ..., "encoder": component, ...}`
        (kind one of image / video / audio / sequence; also `shares_encoder_with`, `projector`,
        `feature_layer`, `select_strategy`, `placeholder`, `processing`). `projector` is a name, a spec
        dict, or a map modality -> either. Keyword options: `tokenizer` (placeholders are added to it),
        `placeholder_token_ids`, `modality_options` (per modality, the same spec keys).

        Example:
            >>> model = OmniForConditionalGeneration.from_components(
            ...     text="HuggingFaceTB/SmolLM2-135M", image="google/siglip-base-patch16-224",
            ...     modalities={"depth": {"kind": "image", "encoder": dinov2_config}})
        """
        from omnifuse.modeling.builder import compose

        named = {"image": image, "video": video, "audio": audio}
        overlap = sorted(k for k, v in named.items() if v is not None and k in (modalities or {}))
        if overlap:
            raise ModalityError(f"{overlap} given both as a keyword and in `modalities`; give each once")
        sources = {k: v for k, v in named.items() if v is not None and v is not False} | dict(modalities or {})
        return compose(cls, text, sources, projector=projector, **kwargs)
