"""Media items -> encoder tokens grouped per item, for the pooling heads.

An item (an image, a video, an audio clip, a sequence) becomes one or more units (crops, frames,
windows) through the processor's item processor for its modality; all units of a batch go through
the encoder in one pass, and each item's valid tokens are gathered back into one padded row.

Example:
    >>> items = [prepare_item(processor, {"type": "image", "path": "a.png"}, "item 0")]  # doctest: +SKIP
    >>> tokens, mask = encode_items(model, "image", items)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from omnifuse.errors import ModalityError
from omnifuse.modeling.tokens import encoder_token_count
from omnifuse.processing.media import MediaError
from omnifuse.processing.modalities import EncodedMedia
from omnifuse.processing.parts import part_source


@dataclass
class PreparedItem:
    modality: str  # the modality name ("image", "depth", ...)
    media: EncodedMedia


def prepare_item(processor, part: dict[str, Any], item: str) -> PreparedItem:
    """Decode one content part (`{"type": "image", "path": ...}`) into its encoder units."""
    name = processor.modality_for(part.get("type"), item)
    try:
        encoded = processor.items[name].encode(part_source(part), item, processor.limits, processor.tokenizer)
    except MediaError as err:
        raise MediaError(name, item, err.reason) from err
    except ValueError as err:
        if isinstance(err, ModalityError):
            raise
        raise MediaError(name, item, str(err)) from err
    return PreparedItem(name, encoded)


def unit_token_mask(model, name: str, media: EncodedMedia, tokens: int) -> torch.Tensor:
    """(units, tokens) mask of the encoder tokens that cover real input (windowed kinds pad the last unit)."""
    units = media.values.shape[0]
    if media.mask is None:
        return torch.ones(units, tokens, dtype=torch.bool)
    owner = model.config.encoder_spec_for(name)
    counts = [min(encoder_token_count(owner, int(v)), tokens) for v in media.mask.sum(-1).tolist()]
    return torch.arange(tokens).unsqueeze(0) < torch.tensor(counts).unsqueeze(1)


def encode_items(model, name: str, items: list[PreparedItem]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder tokens of items of one modality: (items, max_tokens, dim) and a (items, max_tokens) mask."""
    values = torch.cat([it.media.values for it in items]).to(model.dtype).to(model.device)
    masks = [it.media.mask for it in items]
    mask = torch.cat(masks).to(model.device) if all(m is not None for m in masks) else None
    features = model.encoder_for(name)(values, mask)  # (all units, tokens, dim)
    rows, start = [], 0
    for it in items:
        units = it.media.values.shape[0]
        valid = unit_token_mask(model, name, it.media, features.shape[1]).to(features.device)
        rows.append(features[start : start + units][valid])  # this item's valid tokens, in order
        start += units
    width = max(r.shape[0] for r in rows)
    padded = features.new_zeros(len(rows), width, features.shape[-1])
    row_mask = torch.zeros(len(rows), width, dtype=torch.bool, device=features.device)
    for i, r in enumerate(rows):
        padded[i, : r.shape[0]] = r
        row_mask[i, : r.shape[0]] = True
    return padded, row_mask
