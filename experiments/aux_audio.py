"""Prototype: warm the audio encoder up on per-frame labels (pitch class of the sounding tone, log amplitude)."""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn

from omnifuse.benchmark import audio as au
from omnifuse.benchmark.common import SynthConfig

BUILDERS = (au.build_pitch, au.build_beeps, au.build_longer, au.build_louder)


def frame_labels(tones, frames, clip_seconds=1.0):
    """Per encoder frame: pitch class (0 none, 1..3) and log2 amplitude (nan where silent)."""
    step = clip_seconds / frames
    pitch = np.zeros(frames, dtype=np.int64)
    loud = np.full(frames, np.nan, dtype=np.float32)
    centres = (np.arange(frames) + 0.5) * step
    for t in tones:
        on = (centres >= t["start"]) & (centres < t["start"] + t["duration"])
        pitch[on] = 1 + au.PITCHES.index(au.pitch_class(t["freq"]))
        loud[on] = np.log2(t["amplitude"])
    return pitch, loud


def audio_values(processor, clips):
    msgs = [[{"role": "user", "content": [{"type": "audio", "audio": c, "sampling_rate": 16000}]}] for c in clips]
    batch = processor.apply_chat_template(msgs)
    keys = [k for k in batch if k not in ("input_ids", "attention_mask") and not k.endswith("_mask")]
    return batch[keys[0]]


def pretrain(model, processor, steps, batch=32, seed=0, lr=2e-3):
    enc = model.encoder_for("audio")
    rng = np.random.default_rng(seed + 777)
    cfg = SynthConfig()
    with torch.no_grad():
        probe = enc(audio_values(processor, [np.zeros(16000, np.float32)]))
    frames, hidden = probe.shape[1], probe.shape[2]
    heads = nn.Linear(hidden, 4 + 1)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(heads.parameters()), lr=lr)
    t0, accs = time.time(), []
    for step in range(steps):
        recs = [BUILDERS[int(rng.integers(4))](rng, cfg) for _ in range(batch)]
        labels = [frame_labels(r.facts["tones"], frames) for r in recs]
        pitch = torch.tensor(np.stack([p for p, _ in labels]))
        loud = torch.tensor(np.stack([v for _, v in labels]))
        out = heads(enc(audio_values(processor, [r.media[0][1][0] for r in recs])))
        on = ~torch.isnan(loud)
        loss = nn.functional.cross_entropy(out[..., :4].flatten(0, 1), pitch.flatten())
        loss = loss + ((out[..., 4][on] - loud[on]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= steps - 20:
            accs.append((out[..., :4].argmax(-1) == pitch).float().mean().item())
        if step % 50 == 0:
            print(f"audio aux {step} loss {loss.item():.3f} {time.time()-t0:.0f}s", file=sys.stderr, flush=True)
    return round(float(np.mean(accs)), 3), round(time.time() - t0, 1)
