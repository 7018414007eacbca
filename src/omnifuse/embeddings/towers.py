"""Text towers: captions -> token hidden states + a validity mask, for the text pooling head.

`"lm"` uses the composite's own language model (its base model's last hidden states); any other value
is a local transformers text-encoder folder (e.g. all-MiniLM-L6-v2), kept frozen and read by path.

Example:
    >>> tower = build_text_tower("lm", model, processor.tokenizer)  # doctest: +SKIP
    >>> hidden, mask = tower(["a red circle."])  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from omnifuse.errors import FolderError, OmnifuseInputError


class EmptyTextError(OmnifuseInputError):
    """A text to embed that has no tokens."""


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded on the right (causal LMs then see the same prefix batched or alone)."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
    return ids, mask


class TextTower(nn.Module):
    """Tokenizer + a transformers base model whose last hidden states are pooled by the text head."""

    def __init__(self, encoder: nn.Module, tokenizer, max_tokens: int = 128):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.hidden_size

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.tokenizer(t, add_special_tokens=False).input_ids[: self.max_tokens] for t in texts]
        for i, row in enumerate(rows):
            if not row:
                raise EmptyTextError(f"text {i} ({texts[i]!r}) has no tokens to embed")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return pad_right(rows, pad_id)

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(texts)
        device = next(self.encoder.parameters()).device
        out = self.encoder(input_ids=ids.to(device), attention_mask=mask.to(device))
        return out.last_hidden_state, mask.to(device)


def build_text_tower(source: str, model: nn.Module, tokenizer) -> TextTower:
    """The composite's LM (`"lm"`) or a frozen transformers encoder loaded from a local folder."""
    if source == "lm":
        return TextTower(model.language_model.base_model, tokenizer)
    folder = Path(source)
    if not (folder / "config.json").is_file():
        raise FolderError(f"text tower {source!r}: not 'lm' and not a local transformers model folder (config.json)")
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(folder).eval().requires_grad_(False)
    return TextTower(encoder, AutoTokenizer.from_pretrained(folder))
