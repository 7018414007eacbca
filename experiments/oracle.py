"""Issue 17 diagnostic: replace the image tokens by oracle tokens (exact colour, shape, row, column of each
cell) to separate an encoder problem from an LM-side lookup problem.

Run: PYTHONPATH=src python experiments/oracle.py --types image_position --steps 400 [--oracle] [--layers 3]
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
import grounding  # noqa: E402
import harness  # noqa: E402

from omnifuse.benchmark.common import COLORS, SynthConfig
from omnifuse.benchmark.dense import cell_labels
from omnifuse.benchmark.generate import QUESTION_TYPES, split_seed, to_messages
from omnifuse.benchmark.image import PlacedShape


class OracleProjector(nn.Module):
    def __init__(self, dim: int, grid: int = 4, position: bool = True):
        super().__init__()
        self.colour, self.shape = nn.Embedding(9, dim), nn.Embedding(4, dim)
        self.row, self.col = nn.Embedding(grid, dim), nn.Embedding(grid, dim)
        self.grid, self.position, self.current, self.words = grid, position, None, None
        self.role, self.roles = nn.Embedding(3, dim), None

    def output_length(self, n):
        return n

    def forward(self, features, lengths):
        colours, shapes = self.current
        if self.words is not None:  # image tokens = the LM's own embeddings of the words naming the cell
            table, colour_ids, shape_ids = self.words
            out = table(colour_ids[colours]) + table(shape_ids[shapes])
        else:
            out = self.colour(colours) + self.shape(shapes)
        if self.position:
            idx = torch.arange(self.grid * self.grid)
            out = out + self.row(idx // self.grid) + self.col(idx % self.grid)
        if self.roles is not None:  # the lookup done for the LM: cells of object a and of object b are marked
            out = out + self.role(self.roles)
        return out


def build_where(rng, cfg):
    """Training-only grounding question: the column and row (0-3) of a named object's centre."""
    from omnifuse.benchmark import image as im
    from omnifuse.benchmark.common import SHAPES, SyntheticRecord, choose, sample_distinct
    count = int(rng.integers(2, 5))
    specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, count)]
    shapes = im.sample_layout(rng, specs, cfg.image_size)
    s = shapes[0]
    cx, cy = s.center
    answer = f"{int(cx // 8)} {int(cy // 8)}"
    facts = {"shapes": [t.as_fact() for t in shapes]}
    question = f"Where is the {s.color} {s.shape}? Give column and row."
    return SyntheticRecord("image_where", question, answer, [("image", im.render_scene(shapes, cfg.image_size))], facts)


def labels_of(records):
    cs, ks = [], []
    for r in records:
        shapes = [PlacedShape(s["shape"], s["color"], s["bbox"][0], s["bbox"][1], s["bbox"][2] - s["bbox"][0])
                  for s in r.facts["shapes"]]
        c, k = cell_labels(shapes, 32, 4)
        cs.append(c)
        ks.append(k)
    return torch.from_numpy(np.stack(cs)), torch.from_numpy(np.stack(ks))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--types", default="image_position")
    p.add_argument("--oracle", action="store_true")
    p.add_argument("--no_position", action="store_true")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--ground_layer", type=int, default=-1, help="hidden state the grounding head reads")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prefix", action="store_true")
    p.add_argument("--marked", action="store_true", help="oracle of the lookup: a's and b's cells carry a role")
    p.add_argument("--ground", type=float, default=0.0, help="weight of a loss: the LM's state at each colour word "
                   "of the question names the cell of that object's centre")
    p.add_argument("--question_first", action="store_true", help="question text before the image")
    p.add_argument("--two", action="store_true", help="train position questions on two-shape scenes only")
    p.add_argument("--where", action="store_true", help="add training-only 'where is X' grounding questions")
    p.add_argument("--words", action="store_true", help="oracle tokens are the LM's word embeddings")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    types = args.types.split(",")
    hargs = argparse.Namespace(layers=args.layers, audio=False, pos2d=False)
    model, processor = harness.build(hargs, harness.corpus(types, args.seed))
    oracle = OracleProjector(model.config.text_config.hidden_size, position=not args.no_position)
    if args.oracle:
        model.projectors["image"] = oracle
    if args.words:
        from omnifuse.benchmark.common import SHAPES
        tok = processor.tokenizer
        def one(word):
            return tok.encode(" " + word, add_special_tokens=False)[-1]

        pad = tok.encode(" the", add_special_tokens=False)[-1]
        oracle.words = (model.get_input_embeddings(), torch.tensor([pad] + [one(c) for c in COLORS]),
                        torch.tensor([pad] + [one(k) for k in SHAPES]))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(split_seed(args.seed, "train"))
    cfg, qtypes = SynthConfig(), [QUESTION_TYPES[t] for t in types]
    if args.two:  # position questions about two shapes only: no distractor to skip
        from omnifuse.benchmark import image as im
        from omnifuse.benchmark.common import SHAPES, choose, sample_distinct

        def build_two(rng, cfg):
            relation = choose(rng, im.POSITIONS)
            specs = [(choose(rng, SHAPES), c) for c in sample_distinct(rng, COLORS, 2)]
            shapes = im.sample_layout(rng, specs, cfg.image_size, lambda s: im.spatial_relation(s[0], s[1]) == relation)
            a, b = (f"{s.color} {s.shape}" for s in shapes[:2])
            q = choose(rng, im.POSITION_TEMPLATES).format(a=a, b=b)
            return im._scene_record("image_position", q, relation, shapes, cfg, pair=[0, 1])
        qtypes = [argparse.Namespace(build=build_two)]
    if args.where:
        qtypes.append(argparse.Namespace(build=build_where))
    warm = max(1, args.steps // 20)

    def run(records, labels_only=False):
        messages = [to_messages(r) for r in records]
        if args.question_first:
            for m in messages:
                m[0]["content"] = m[0]["content"][-1:] + m[0]["content"][:-1]
        batch = processor.apply_chat_template(messages, return_labels=True)
        if args.prefix:
            batch["attention_mask"] = harness.prefix_mask(batch)
        oracle.current = labels_of(records)
        if args.marked:
            colours = oracle.current[0]
            roles = torch.zeros_like(colours)
            for row, r in enumerate(records):
                for role, index in ((1, 0), (2, 1)):
                    colour = 1 + COLORS.index(r.facts["shapes"][index]["color"])
                    roles[row][colours[row] == colour] = role
            oracle.roles = roles
        return batch

    head = grounding.GroundingHead(model.config.text_config.hidden_size, processor.tokenizer)
    opt.add_param_group({"params": head.parameters(), "lr": args.lr})

    t0 = time.time()
    model.train()
    for step in range(args.steps):
        f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (args.steps - warm)))
        for g in opt.param_groups:
            g["lr"] = args.lr * f
        records = [qtypes[int(rng.integers(len(qtypes)))].build(rng, cfg) for _ in range(32)]
        batch = run(records)
        if args.ground:
            out = model(**batch, output_hidden_states=True)
            hidden = out.hidden_states[args.ground_layer]
            loss = out.loss + args.ground * head.loss(hidden, batch["input_ids"], records)
        else:
            loss = model(**batch).loss
        harness.update(model, opt, loss, step, t0)
    tests = harness.test_records(types, 60, args.seed)
    model.eval()
    hits = {}
    with torch.no_grad():
        for i in range(0, len(tests), 60):
            chunk = tests[i:i + 60]
            batch = run(chunk)
            labels = batch.pop("labels")
            pred = model(**batch).logits[:, :-1].argmax(-1)
            ok = ((pred == labels[:, 1:]) | (labels[:, 1:] == -100)).all(-1)
            for r, o in zip(chunk, ok.tolist()):
                hits.setdefault(r.question_type, []).append(int(o))
    acc = {k: round(sum(v) / len(v), 3) for k, v in hits.items()}
    print(json.dumps({"args": vars(args), "acc": acc, "train_s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
