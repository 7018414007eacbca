"""The `contrastive:` block of a recipe stage (pydantic; unknown keys are refused like everywhere else).

Example (YAML):
    stages:
      - name: contrastive
        max_steps: 300
        contrastive: {loss: siglip, dim: 64, pooling: attention, text_tower: lm}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ContrastiveSection(BaseModel):
    """Loss, embedding size, pooling and text tower of a `contrastive` stage."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    loss: Literal["siglip", "clip"] = "siglip"
    dim: int = Field(64, ge=2, description="size of the shared embedding space")
    pooling: Literal["mean", "attention"] = "mean"
    text_tower: str = Field("lm", description="'lm' (the composite's LM, mean-pooled) or a text-encoder folder")
    heads_lr: float = Field(1e-3, ge=0, description="peak learning rate of the pooling heads and the loss scale/bias")
