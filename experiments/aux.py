"""Prototype lever 2: pretrain the image encoder on per-cell labels the generator gives for free."""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from PIL import Image
from torch import nn

from omnifuse.benchmark import image as im
from omnifuse.benchmark.common import COLORS, SHAPES, SynthConfig, choose, sample_distinct

GRID = 4
POSITION_HEADS = False
CENTRE_HEAD = False  # one more logit per cell: an object's centre lies in this cell


def cell_labels(shapes, size=32, grid=GRID, min_px=6):
    """(grid*grid,) colour idx (0 = none) and shape idx (0 = none): the object covering most of each cell."""
    masks = []
    for s in shapes:
        m = Image.new("L", (size, size), 0)
        from PIL import ImageDraw
        d = ImageDraw.Draw(m)
        x0, y0, last = s.x0, s.y0, s.size - 1
        if s.shape == "square":
            d.rectangle([x0, y0, x0 + last, y0 + last], fill=1)
        elif s.shape == "circle":
            d.ellipse([x0, y0, x0 + last, y0 + last], fill=1)
        else:
            d.polygon([(x0 + last / 2, y0), (x0, y0 + last), (x0 + last, y0 + last)], fill=1)
        masks.append(np.asarray(m))
    cell = size // grid
    colour = np.zeros(grid * grid, dtype=np.int64)
    shape = np.zeros(grid * grid, dtype=np.int64)
    if not masks:
        return colour, shape
    stack = np.stack(masks).reshape(len(masks), grid, cell, grid, cell).sum((2, 4)).reshape(len(masks), -1)
    best = stack.argmax(0)
    for c in range(grid * grid):
        if stack[best[c], c] >= min_px:
            colour[c] = 1 + COLORS.index(shapes[best[c]].color)
            shape[c] = 1 + SHAPES.index(shapes[best[c]].shape)
    return colour, shape


def scenes(rng, n, cfg):
    for _ in range(n):
        count = int(rng.integers(1, 5))
        specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, count)]
        shapes = im.sample_layout(rng, specs, cfg.image_size)
        yield im.render_scene(shapes, cfg.image_size), shapes


def pixel_batch(processor, images):
    msgs = [[{"role": "user", "content": [{"type": "image", "image": img}]}] for img in images]
    batch = processor.apply_chat_template(msgs)
    return next(v for k, v in batch.items() if k not in ("input_ids", "attention_mask"))


def pretrain(model, processor, steps, batch=64, seed=0, lr=2e-3):
    """Encoder + two linear per-cell heads; returns per-cell accuracy on occupied cells (last 20 steps)."""
    enc = model.encoders["image"]
    dim = 64
    heads = nn.Linear(dim, len(COLORS) + 1 + len(SHAPES) + 1 + (2 * GRID if POSITION_HEADS else 0) + int(CENTRE_HEAD))
    opt = torch.optim.AdamW(list(enc.parameters()) + list(heads.parameters()), lr=lr)
    rng = np.random.default_rng(seed + 12345)
    cfg = SynthConfig()
    enc.train()
    t0, accs = time.time(), []
    for step in range(steps):
        items = list(scenes(rng, batch, cfg))
        pixels = pixel_batch(processor, [i for i, _ in items])
        labels = [cell_labels(s) for _, s in items]
        col = torch.tensor(np.stack([c for c, _ in labels]))
        shp = torch.tensor(np.stack([s for _, s in labels]))
        feats = enc(pixels)  # (B, 16, 64)
        logits = heads(feats)
        lc, ls = logits[..., : len(COLORS) + 1], logits[..., len(COLORS) + 1 : len(COLORS) + len(SHAPES) + 2]
        loss = nn.functional.cross_entropy(lc.flatten(0, 1), col.flatten()) + nn.functional.cross_entropy(
            ls.flatten(0, 1), shp.flatten())
        if POSITION_HEADS:  # row and column of each cell: zero padding lets a CNN learn absolute position
            rc = logits[..., len(COLORS) + len(SHAPES) + 2 :]
            cells = torch.arange(GRID * GRID)
            loss = loss + nn.functional.cross_entropy(rc[..., :GRID].flatten(0, 1), (cells // GRID).repeat(batch))
            loss = loss + nn.functional.cross_entropy(rc[..., GRID:].flatten(0, 1), (cells % GRID).repeat(batch))
        if CENTRE_HEAD:
            centres = torch.zeros(batch, GRID * GRID)
            for b, (_, shapes) in enumerate(items):
                for sh in shapes:
                    cx, cy = sh.center
                    centres[b, int(cy // 8) * GRID + int(cx // 8)] = 1.0
            loss = loss + nn.functional.binary_cross_entropy_with_logits(logits[..., -1], centres)
        opt.zero_grad()
        loss.backward()
        opt.step()
        occ = col > 0
        joint = ((lc.argmax(-1) == col) & (ls.argmax(-1) == shp))[occ].float().mean().item()
        if step >= steps - 20:
            accs.append(joint)
        if step % 50 == 0:
            print(f"aux {step} loss {loss.item():.3f} joint {joint:.2f}", file=sys.stderr, flush=True)
    return round(float(np.mean(accs)), 3), round(time.time() - t0, 1)
