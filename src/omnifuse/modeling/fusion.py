"""Fusion: projected media features replace the placeholder tokens' embeddings, in order."""

from __future__ import annotations

import torch


def scatter_features(
    embeds: torch.Tensor, placeholder_mask: torch.Tensor, features: torch.Tensor, modality: str
) -> torch.Tensor:
    """Write `features` (n, hidden) into the `n` positions where `placeholder_mask` (batch, seq) is True.

    Raises ValueError naming the modality and both counts when they differ: a silent mismatch
    would shift every later feature onto the wrong token.

    Example:
        >>> embeds = scatter_features(embeds, input_ids == image_token_id, image_features, "image")
    """
    n_tokens = int(placeholder_mask.sum())
    n_features = features.shape[0]
    if n_tokens != n_features:
        raise ValueError(
            f"{modality}: {n_tokens} placeholder tokens in input_ids but {n_features} feature vectors from "
            f"the encoder and projector; expand each placeholder with the processor of this model"
        )
    mask = placeholder_mask.unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(mask, features.to(embeds.device, embeds.dtype))
