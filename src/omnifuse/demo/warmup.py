"""Encoder warm-up: teach a fresh vision encoder what covers each feature-map cell and where the cell is,
before any LM step.

A real user starts from a pretrained CLIP/SigLIP whose patch features already say "red" and
"triangle"; the demo has no weights to download, so it trains its fresh encoder for a few hundred
cheap steps (no LM in the loop) on dense labels the benchmark generator gives for free
(`omnifuse.benchmark.dense`): linear heads read colour, shape, row and column off every cell. Measured on
the image questions (README "What mattered"): without it the LM had to discover binding through
1-3 answer tokens per image, and shape-of-a-named-colour stayed near chance.

Example:
    >>> stats = warm_up_vision_encoder(model, processor, steps=300)  # doctest: +SKIP
    >>> stats["cell_accuracy"]  # colour and shape both right, on cells an object covers  # doctest: +SKIP
    0.94
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from omnifuse.benchmark.audio import PITCHES
from omnifuse.benchmark.common import BACKGROUND, COLORS, SHAPES
from omnifuse.benchmark.dense import NO_OBJECT, labelled_clips, labelled_scenes

TEXT_KEYS = ("input_ids", "attention_mask", "labels", "position_ids")


def media_values(processor, items: list, kind: str = "image") -> torch.Tensor:
    """The processor's tensor for a batch of images (or 16 kHz audio clips), whatever its key is called."""
    def part(item) -> dict:
        return {"type": kind, "audio": item, "sampling_rate": 16000} if kind == "audio" else {"type": kind, kind: item}

    batch = processor.apply_chat_template([[{"role": "user", "content": [part(item)]}] for item in items])
    media = [value for key, value in batch.items() if key not in TEXT_KEYS and not key.endswith("_mask")]
    if len(media) != 1:
        raise ValueError(f"expected one media tensor for {kind}, got keys {sorted(batch)}")
    return media[0]


def cell_grid(tokens: int) -> int:
    """Side of the square feature map an encoder's token count comes from (16 -> 4)."""
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"warm-up needs a square feature map; the encoder gives {tokens} tokens")
    return side


class CellHeads(nn.Module):
    """Colour and shape logits per cell (class 0 = no object), and the cell's own row and column.

    A CNN's feature map is translation-equivariant: without the row/column targets its tokens barely
    say where they are, and "is the red circle left of the blue square?" has nothing to compare.
    """

    def __init__(self, hidden: int, grid: int):
        super().__init__()
        self.colour = nn.Linear(hidden, len(COLORS) + 1)
        self.shape = nn.Linear(hidden, len(SHAPES) + 1)
        self.row = nn.Linear(hidden, grid)
        self.column = nn.Linear(hidden, grid)
        self.centre = nn.Linear(hidden, 1)
        self.grid = grid

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.colour(features), self.shape(features)

    def position_loss(self, features: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every cell's row and column (raster order) read from its own feature."""
        cells = torch.arange(self.grid * self.grid).expand(features.shape[0], -1).flatten()
        rows = nn.functional.cross_entropy(self.row(features).flatten(0, 1), cells // self.grid)
        return rows + nn.functional.cross_entropy(self.column(features).flatten(0, 1), cells % self.grid)

    def centre_loss(self, features: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of "an object's centre lies in this cell" (one flag per object: counting)."""
        return nn.functional.binary_cross_entropy_with_logits(self.centre(features).squeeze(-1), centres.float())


def _joint_accuracy(colour_logits, shape_logits, colours, shapes) -> float:
    covered = colours != NO_OBJECT
    right = (colour_logits.argmax(-1) == colours) & (shape_logits.argmax(-1) == shapes)
    return float(right[covered].float().mean()) if covered.any() else 1.0


def _cell_heads(encoder: nn.Module, processor) -> tuple[int, CellHeads]:
    """Grid side and heads sized from one forward pass on a blank image."""
    with torch.no_grad():
        features = encoder(media_values(processor, [Image.new("RGB", (32, 32), BACKGROUND)]))
    grid = cell_grid(features.shape[1])
    return grid, CellHeads(features.shape[-1], grid)


def warm_up_vision_encoder(
    model,
    processor,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    modality: str = "image",
    log_every: int = 50,
) -> dict[str, Any]:
    """Train `model`'s `modality` encoder in place on per-cell colour/shape labels of fresh scenes.

    Returns `cell_accuracy` (both labels right on covered cells, mean of the last 20 steps), `steps`, `seconds`.
    """
    encoder = model.encoder_for(modality)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    was_training = encoder.training
    encoder.train()
    grid, heads = _cell_heads(encoder, processor)

    def batch_loss() -> tuple[torch.Tensor, Callable[[], float]]:
        images, colours, shapes, centres = labelled_scenes(rng, batch_size, grid)
        colours, shapes = torch.from_numpy(colours), torch.from_numpy(shapes)
        features = encoder(media_values(processor, images))
        colour_logits, shape_logits = heads(features)
        loss = nn.functional.cross_entropy(colour_logits.flatten(0, 1), colours.flatten())
        loss = loss + nn.functional.cross_entropy(shape_logits.flatten(0, 1), shapes.flatten())
        loss = loss + heads.position_loss(features) + heads.centre_loss(features, torch.from_numpy(centres))
        return loss, lambda: _joint_accuracy(colour_logits, shape_logits, colours, shapes)

    params = [*encoder.parameters(), *heads.parameters()]
    accuracy, seconds = _fit(params, batch_loss, steps, lr, "[warm-up]", log_every)
    encoder.train(was_training)
    return {"cell_accuracy": accuracy, "steps": steps, "seconds": seconds}


def warm_up_audio_encoder(
    model,
    processor,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    window_seconds: float = 1.0,
    modality: str = "audio",
    log_every: int = 50,
) -> dict[str, Any]:
    """Train `model`'s audio encoder in place on per-frame labels: pitch class (or silence) and log2 amplitude.

    `window_seconds` is the encoder window (the demo's Whisper takes 1 s). Returns `frame_accuracy`
    (pitch class right on every frame, mean of the last 20 steps), `steps`, `seconds`.
    """
    encoder = model.encoder_for(modality)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 23]))
    was_training = encoder.training
    encoder.train()
    with torch.no_grad():
        probe = encoder(media_values(processor, [np.zeros(16000, np.float32)], "audio"))
    frames, heads = probe.shape[1], nn.Linear(probe.shape[-1], len(PITCHES) + 2)  # pitch classes + silence, loudness

    def batch_loss() -> tuple[torch.Tensor, Callable[[], float]]:
        clips, pitches, loudness = labelled_clips(rng, batch_size, frames, window_seconds)
        pitches, loudness = torch.from_numpy(pitches), torch.from_numpy(loudness)
        out = heads(encoder(media_values(processor, clips, "audio")))
        sounding = ~torch.isnan(loudness)
        loss = nn.functional.cross_entropy(out[..., :-1].flatten(0, 1), pitches.flatten())
        loss = loss + ((out[..., -1][sounding] - loudness[sounding]) ** 2).mean()
        return loss, lambda: float((out[..., :-1].argmax(-1) == pitches).float().mean())

    params = [*encoder.parameters(), *heads.parameters()]
    accuracy, seconds = _fit(params, batch_loss, steps, lr, "[warm-up audio]", log_every)
    encoder.train(was_training)
    return {"frame_accuracy": accuracy, "steps": steps, "seconds": seconds}


def _fit(
    params: list[torch.Tensor],
    batch_loss: Callable[[], tuple[torch.Tensor, Callable[[], float]]],
    steps: int,
    lr: float,
    label: str,
    log_every: int,
) -> tuple[float | None, float]:
    """AdamW over `params` on a fresh labelled batch per step; (accuracy over the last 20 steps, seconds)."""
    optimizer = torch.optim.AdamW(params, lr=lr)
    recent, started = [], time.time()
    for step in range(steps):
        loss, accuracy = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= steps - 20:
            recent.append(accuracy())
        if log_every and step % log_every == 0:
            print(f"{label} step {step}/{steps} loss {loss.item():.3f}", file=sys.stderr, flush=True)
    return (round(float(np.mean(recent)), 4) if recent else None), round(time.time() - started, 1)
