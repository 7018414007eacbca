"""Contrastive losses (SigLIP sigmoid, CLIP InfoNCE) with negatives gathered across ranks.

Each rank scores its own media rows against every rank's texts (and, for CLIP, its texts against
every rank's media). `torch.distributed.nn.functional.all_gather` carries gradients back to the rank
that owns each row, so with DDP averaging the `world_size`-scaled local loss the update equals one
process computing the loss of the whole global batch.

Example:
    >>> media, text = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
    >>> loss = contrastive_loss(media, text, torch.tensor(2.3), torch.tensor(-10.0), "siglip")
    >>> loss.shape
    torch.Size([])
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's rows concatenated (gradients flow back to their owners) and where this rank's start."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    import torch.distributed.nn.functional as dist_fn

    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    width = int(max(s.item() for s in sizes))
    padded = F.pad(x, (0, 0, 0, width - x.shape[0]))  # all_gather needs equal shapes
    parts = dist_fn.all_gather(padded)
    rank = dist.get_rank()
    offset = sum(int(s.item()) for s in sizes[:rank])
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]), offset


def siglip_terms(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Summed -log sigmoid(+-logit) over every pair; `positive` marks matching pairs."""
    signs = positive.float() * 2 - 1
    return -F.logsigmoid(signs * logits).sum()


def contrastive_loss(
    media: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor,
    kind: str = "siglip",
    pair_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """This rank's share of the global-batch loss (row i of media matches row i of text).

    SigLIP: summed pair terms / global batch size; CLIP: the mean of both cross-entropies. Summed over
    ranks it is the loss one process gets on the whole batch. `pair_ids` (one integer per row, e.g. a
    caption hash): SigLIP also counts pairs with equal ids as positives.
    """
    all_media, offset = gather_with_grad(media)
    all_text, _ = gather_with_grad(text)
    total = all_text.shape[0]
    scale = logit_scale.clamp(max=math.log(100.0)).exp()  # CLIP's cap on the learned temperature
    targets = torch.arange(offset, offset + media.shape[0], device=media.device)
    media_logits = media @ all_text.T * scale
    if kind == "siglip":
        positive = targets.unsqueeze(1) == torch.arange(total, device=media.device).unsqueeze(0)
        if pair_ids is not None:
            all_ids, _ = gather_with_grad(pair_ids.unsqueeze(1).double())
            positive |= pair_ids.double().unsqueeze(1) == all_ids.T
        return siglip_terms(media_logits + logit_bias, positive) / total
    if kind != "clip":
        raise ValueError(f"unknown contrastive loss {kind!r}: use 'siglip' or 'clip'")
    text_logits = text @ all_media.T * scale
    ce = F.cross_entropy(media_logits, targets, reduction="sum") + F.cross_entropy(
        text_logits, targets, reduction="sum"
    )
    return ce / (2 * total)
