"""OmniForConditionalGeneration: encoders -> projectors -> features scattered into a causal LM.

Example:
    >>> model = OmniForConditionalGeneration.from_components(
    ...     text=LlamaConfig(...), image=SiglipVisionConfig(...), projector="mlp")
    >>> out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from omnifuse.config import OmniConfig, encoder_config_from_dict
from omnifuse.modeling.encoders import ModalityEncoder, _build_module, probe_encoder
from omnifuse.modeling.fusion import scatter_features
from omnifuse.modeling.parts import PartsMixin
from omnifuse.modeling.projectors import build_projector
from omnifuse.modeling.tokens import (
    encoder_token_count,
    mask_input_name,
    modality_input_name,
    projector_layout,
    unit_token_count,
)


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
                self.encoders[name] = ModalityEncoder(_build_module(encoder_config_from_dict(spec.encoder)), spec)
            owner = config.encoder_spec_for(name)
            in_dim = probe_encoder(owner.encoder).hidden_size * owner.num_feature_layers
            self.projectors[name] = build_projector(spec.projector, in_dim, text_hidden, projector_layout(spec.kind))
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

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
        features = encoder(values, mask)
        valid_in = [None] * features.shape[0] if mask is None else [int(n) for n in mask.sum(-1).tolist()]
        out_lengths = [unit_token_count(spec, owner, v) for v in valid_in]
        feature_lengths = torch.tensor([encoder_token_count(owner, v) for v in valid_in], device=features.device)
        projected = self.projectors[name](features, feature_lengths)
        return torch.cat([projected[i, :n] for i, n in enumerate(out_lengths)], dim=0)

    def embed_inputs(
        self, input_ids: torch.LongTensor, media: dict[str, torch.Tensor], strict: bool = True
    ) -> torch.Tensor:
        """Token embeddings with every modality's features scattered into its placeholder positions.

        `strict=False` (decoding with a cache) lets placeholder ids without media pass as plain tokens:
        a model may generate one, and it has no medium behind it.
        """
        embeds = self.get_input_embeddings()(input_ids)
        for name, spec in self.config.modality_specs().items():
            placeholder_mask = input_ids == spec.placeholder_token_id
            input_name = modality_input_name(self.config, name)
            values = media.get(input_name)
            if values is None:
                if strict and placeholder_mask.any():
                    raise ValueError(
                        f"{name}: input_ids hold {int(placeholder_mask.sum())} placeholder tokens but no "
                        f"`{input_name}` was given"
                    )
                continue
            features = self.encode_media(name, values, media.get(mask_input_name(input_name)))
            embeds = scatter_features(embeds, placeholder_mask, features, modality=name)
        return embeds

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
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        input_values_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Media come under transformers' names: images `pixel_values` (units, 3, H, W), videos
        `pixel_values_videos` (frames, 3, H, W), audio `input_features` (windows, mels, frames) or
        `input_values` (windows, samples) with a `*_mask` of valid frames/samples per window."""
        given = {
            "pixel_values": pixel_values,
            "pixel_values_videos": pixel_values_videos,
            "input_features": input_features,
            "input_features_mask": input_features_mask,
            "input_values": input_values,
            "input_values_mask": input_values_mask,
        }
        media = {key: value for key, value in given.items() if value is not None}
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or inputs_embeds")
            decoding = past_key_values is not None and past_key_values.get_seq_length() > 0
            inputs_embeds = self.embed_inputs(input_ids, media, strict=not decoding)
        elif media:
            raise ValueError("media tensors need input_ids (to find the placeholders), not inputs_embeds")
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

    @classmethod
    def from_components(
        cls,
        text,
        image=None,
        audio=None,
        video=None,
        projector: str | dict = "mlp",
        **kwargs,
    ) -> OmniForConditionalGeneration:
        """Compose a model from a causal LM and modality encoders.

        Each component is a transformers config, a config dict (with `model_type`), a local folder
        or a hub id (folders and ids load their weights). `video=True` shares the image encoder.
        `projector` is a name, a spec dict, or a map modality -> either. Keyword options:
        `tokenizer` (placeholders are added to it), `placeholder_token_ids`, `modality_options`
        (per modality: `feature_layer`, `select_strategy`, `placeholder`, `processing`).

        Example:
            >>> model = OmniForConditionalGeneration.from_components(
            ...     text="HuggingFaceTB/SmolLM2-135M", image="google/siglip-base-patch16-224", projector="mlp")
        """
        from omnifuse.modeling.builder import compose

        return compose(cls, text, image=image, audio=audio, video=video, projector=projector, **kwargs)
