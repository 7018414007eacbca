"""Pooling heads: a medium's encoder tokens (or a caption's hidden states) -> one vector in a shared space.

One head per modality name plus one for text, each `pool (mean | attention) -> LayerNorm -> Linear`,
and the learned loss temperature / bias. They live beside the model folder, never inside its weights:
`embedding_heads.safetensors` + `embedding_heads.json` (so `from_pretrained` of the model is unchanged).

Example:
    >>> heads = EmbeddingHeads(HeadsConfig(dim=32, modalities={"image": 64}, text_dim=48))
    >>> heads.media["image"](torch.randn(2, 5, 64), torch.ones(2, 5, dtype=torch.bool)).shape
    torch.Size([2, 32])
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from omnifuse.errors import FolderError

HEADS_WEIGHTS = "embedding_heads.safetensors"
HEADS_CONFIG = "embedding_heads.json"
Pooling = Literal["mean", "attention"]
LossName = Literal["siglip", "clip"]


@dataclass
class HeadsConfig:
    """What the heads need to be rebuilt: sizes per modality, pooling, loss, and the text tower used."""

    dim: int = 64
    modalities: dict[str, int] = field(default_factory=dict)  # modality name -> encoder hidden size
    text_dim: int = 0
    pooling: Pooling = "mean"
    loss: LossName = "siglip"
    text_tower: str = "lm"  # "lm": the composite's own LM; otherwise a transformers text-encoder folder

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class PoolingHead(nn.Module):
    """(items, tokens, in_dim) + a (items, tokens) validity mask -> (items, dim), not yet normalised."""

    def __init__(self, in_dim: int, dim: int, pooling: Pooling = "mean"):
        super().__init__()
        self.pooling = pooling
        if pooling == "attention":
            self.query = nn.Parameter(torch.zeros(in_dim))  # zero query = mean pooling at the start
            self.key = nn.Linear(in_dim, in_dim, bias=False)
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(tokens.dtype)
        if self.pooling == "attention":
            scores = self.key(tokens) @ self.query / math.sqrt(tokens.shape[-1])
            scores = scores.masked_fill(mask == 0, float("-inf"))
            weights = torch.softmax(scores, dim=-1) * mask
        else:
            weights = mask
        pooled = (weights.unsqueeze(-1) * tokens).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-9)
        return self.proj(self.norm(pooled))


class EmbeddingHeads(nn.Module):
    """Every modality's head, the text head and the loss's learned scale (log temperature) and bias."""

    def __init__(self, config: HeadsConfig):
        super().__init__()
        self.config = config
        self.media = nn.ModuleDict(
            {n: PoolingHead(d, config.dim, config.pooling) for n, d in config.modalities.items()}
        )
        self.text = PoolingHead(config.text_dim, config.dim, "mean")
        # SigLIP's init (t = 10, b = -10) and CLIP's (1 / 0.07, no bias).
        siglip = config.loss == "siglip"
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0) if siglip else math.log(1 / 0.07)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0 if siglip else 0.0), requires_grad=siglip)

    def head_for(self, name: str) -> PoolingHead:
        if name not in self.media:
            raise FolderError(f"no embedding head for modality {name!r}; heads exist for {sorted(self.media)}")
        return self.media[name]


def save_heads(heads: EmbeddingHeads, folder: str | Path) -> Path:
    """Write `embedding_heads.safetensors` + `embedding_heads.json` into `folder` (beside the model)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in heads.state_dict().items()}
    save_file(state, str(folder / HEADS_WEIGHTS))
    (folder / HEADS_CONFIG).write_text(heads.config.to_json())
    return folder / HEADS_WEIGHTS


def has_heads(folder: str | Path) -> bool:
    return (Path(folder) / HEADS_CONFIG).is_file() and (Path(folder) / HEADS_WEIGHTS).is_file()


def load_heads(folder: str | Path) -> EmbeddingHeads:
    """The heads saved beside a model; FolderError naming what to run when there are none.

    Example:
        >>> heads = load_heads("runs/contrastive")  # doctest: +SKIP
    """
    folder = Path(folder)
    if not has_heads(folder):
        raise FolderError(
            f"{folder}: no {HEADS_CONFIG} / {HEADS_WEIGHTS}; train a `contrastive` stage into this folder first"
        )
    try:
        config = HeadsConfig(**json.loads((folder / HEADS_CONFIG).read_text()))
        heads = EmbeddingHeads(config)
        heads.load_state_dict(load_file(str(folder / HEADS_WEIGHTS)))
    except (ValueError, TypeError, RuntimeError, OSError, SafetensorError) as err:
        raise FolderError(f"{folder}: unreadable embedding heads ({err})") from None
    return heads.eval()
