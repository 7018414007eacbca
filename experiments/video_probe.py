"""Issue 17: why video_appear stays at chance. Trains the demo model on video questions only (fresh
records), after the vision warm-up, with or without temporal context in each video token.

Run: PYTHONPATH=src python experiments/video_probe.py --steps 600 [--temporal]
--temporal: every frame's projector input is the same cell in all of the video's frames, concatenated
(what a temporal merge gives a token), instead of that frame alone.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, "experiments")
import harness  # noqa: E402

from omnifuse.benchmark.generate import QUESTION_TYPES, SynthConfig, split_seed, to_messages
from omnifuse.data.formats import Record
from omnifuse.demo.recipe import demo_model
from omnifuse.demo.warmup import warm_up_vision_encoder
from omnifuse.modeling.projectors import build_projector
from omnifuse.training.build import build_model
from omnifuse.training.recipe import ModelSection

FRAMES = 4


class TemporalContext(nn.Module):
    """Wraps a fresh projector whose input is each cell's features in all FRAMES frames of its video."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def output_length(self, n):
        return self.inner.output_length(n)

    def forward(self, features, lengths):
        n, t, c = features.shape
        videos = features.reshape(n // FRAMES, FRAMES, t, c)
        across = videos.permute(0, 2, 1, 3).reshape(n // FRAMES, 1, t, FRAMES * c).expand(-1, FRAMES, -1, -1)
        return self.inner(across.reshape(n, t, FRAMES * c), lengths)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--temporal", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--types", default="video_appear,video_direction")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    cfg = demo_model()
    cfg.pop("audio")
    cfg["projector"].pop("audio")
    types = [QUESTION_TYPES[t] for t in args.types.split(",")]
    rng = np.random.default_rng(split_seed(args.seed, "train"))
    corpus = [Record(messages=to_messages(t.build(rng, SynthConfig())), source="c") for t in types * 200]
    model, processor = build_model(ModelSection(**cfg), corpus)
    warm_up_vision_encoder(model, processor, steps=300, seed=args.seed, log_every=0)
    if args.temporal:
        inner = build_projector(cfg["projector"]["video"], FRAMES * 64, model.config.text_config.hidden_size, "grid")
        model.projectors["video"] = TemporalContext(inner)
    groups = [
        {"params": [p for n, p in model.named_parameters() if n.startswith("encoders")], "lr": 5e-4},
        {"params": [p for n, p in model.named_parameters() if not n.startswith("encoders")], "lr": 1e-3},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    base = [g["lr"] for g in groups]
    warm = max(1, args.steps // 20)
    t0 = time.time()
    model.train()
    for step in range(args.steps):
        f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (args.steps - warm)))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * f
        records = [types[int(rng.integers(len(types)))].build(rng, SynthConfig()) for _ in range(32)]
        batch = processor.apply_chat_template([to_messages(r) for r in records], return_labels=True)
        harness.update(model, opt, model(**batch).loss, step, t0)
    model.eval()
    hits = {}
    with torch.no_grad():
        for t in types:
            trng = np.random.default_rng(split_seed(args.seed, "test-" + t.name))
            recs = [t.build(trng, SynthConfig()) for _ in range(60)]
            batch = processor.apply_chat_template([to_messages(r) for r in recs], return_labels=True)
            labels = batch.pop("labels")
            pred = model(**batch).logits[:, :-1].argmax(-1)
            ok = ((pred == labels[:, 1:]) | (labels[:, 1:] == -100)).all(-1)
            hits[t.name] = round(float(ok.float().mean()), 3)
    print(json.dumps({"args": vars(args), "acc": hits, "train_s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
