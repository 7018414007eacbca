"""Prototype: one scene, several questions (LLaVA-style multi-turn)."""
from __future__ import annotations

from omnifuse.benchmark import image as im
from omnifuse.benchmark.common import COLORS, SHAPES, SynthConfig, choose, sample_distinct


def scene_questions(shapes, rng):
    qa = [(choose(rng, im.COUNT_TEMPLATES), str(len(shapes)))]
    kinds = [s.shape for s in shapes]
    for s in shapes:
        if kinds.count(s.shape) == 1:
            qa.append((choose(rng, im.COLOR_TEMPLATES).format(shape=s.shape), s.color))
        qa.append((choose(rng, im.SHAPE_TEMPLATES).format(color=s.color), s.shape))
    for a in shapes:
        for b in shapes:
            if a is not b and (rel := im.spatial_relation(a, b)):
                q = choose(rng, im.POSITION_TEMPLATES).format(a=f"{a.color} {a.shape}", b=f"{b.color} {b.shape}")
                qa.append((q, rel))
    if im._columns_apart(shapes):
        qa.append((choose(rng, im.CAPTION_TEMPLATES), im.caption_for(shapes)))
    return qa


def conversations(rng, n, turns, cfg: SynthConfig, counts=(1, 4)):
    for _ in range(n):
        count = int(rng.integers(counts[0], counts[1] + 1))
        specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, count)]
        shapes = im.sample_layout(rng, specs, cfg.image_size)
        qa = scene_questions(shapes, rng)
        picked = [qa[int(j)] for j in rng.permutation(len(qa))[:turns]]
        img = im.render_scene(shapes, cfg.image_size)
        msgs = []
        for k, (q, a) in enumerate(picked):
            content = ([{"type": "image", "image": img}] if k == 0 else []) + [{"type": "text", "text": q}]
            msgs.append({"role": "user", "content": content})
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
        yield msgs
