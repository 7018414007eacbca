"""Small fast harness for issue 17: train the demo model on image questions with one lever changed.

Run: PYTHONPATH=src python experiments/harness.py --steps 400 --turns 1 --seed 0 [--pos2d] [--types ...]
Prints one JSON line: per-type exact match on held-out single-question test records (teacher forced:
every answer token and the turn end argmax-correct == greedy decoding gives the answer).
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
import aux  # noqa: E402
import scenes  # noqa: E402

from omnifuse.benchmark.generate import QUESTION_TYPES, SynthConfig, generate_records, split_seed, to_messages
from omnifuse.data.formats import Record
from omnifuse.demo.recipe import demo_model
from omnifuse.training.build import build_model
from omnifuse.training.recipe import ModelSection

PREFIX = False


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--turns", type=int, default=1, help="questions per image (1 = the demo's records)")
    p.add_argument("--pos2d", action="store_true", help="learned absolute position per image token")
    p.add_argument("--types", default="image_color,image_shape,image_count,image_position,image_caption")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test", type=int, default=60, help="test records per type")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--enc_lr", type=float, default=5e-4)
    p.add_argument("--objects", default="1,4", help="min,max shapes per scene (multi-turn scenes)")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--aux_steps", type=int, default=0)
    p.add_argument("--audio_aux_steps", type=int, default=0)
    p.add_argument("--pool", type=int, default=0, help="draw batches from N fixed records (the demo's files)")
    p.add_argument("--aux_position", action="store_true", help="warm-up also predicts each cell's row and column")
    p.add_argument("--aux_centre", action="store_true", help="warm-up also flags each object's centre cell")
    p.add_argument("--audio", action="store_true", help="keep the audio encoder (for audio types)")
    p.add_argument("--prefix", action="store_true", help="prefix-LM: prompt before first answer is bidirectional")
    p.add_argument("--ground", type=float, default=0.0, help="grounding loss weight (experiments/grounding.py)")
    p.add_argument("--ground_layer", type=int, default=1)
    p.add_argument("--ground_offset", type=int, default=0, help="1: the word after the colour (the shape)")
    p.add_argument("--ground_target", default="cell", choices=["cell", "box", "rowcol"])
    p.add_argument("--pos_scale", type=float, default=0.02, help="init scale of the --pos2d table")
    return p.parse_args()


class AddPositions(nn.Module):
    """Wraps a projector: adds a learned embedding per output token index (absolute 2-D position)."""

    def __init__(self, inner: nn.Module, tokens: int, dim: int, scale: float = 0.02):
        super().__init__()
        self.inner = inner
        self.table = nn.Parameter(torch.randn(tokens, dim) * scale)

    def output_length(self, n):
        return self.inner.output_length(n)

    def forward(self, features, lengths):
        out = self.inner(features, lengths)
        return out + self.table[: out.shape[1]]


def prefix_mask(batch) -> torch.Tensor:
    """(B, 1, L, L) bool: causal, plus full attention among the tokens before the first supervised one."""
    labels, keep = batch["labels"], batch["attention_mask"].bool()
    L = labels.shape[1]
    first = torch.where(labels != -100, torch.arange(L), L).min(-1).values  # (B,)
    pos = torch.arange(L)
    causal = pos[None, :, None] >= pos[None, None, :]
    in_prefix = pos[None, :] < first[:, None]  # (B, L)
    both = in_prefix[:, :, None] & in_prefix[:, None, :]
    allowed = (causal | both) & keep[:, None, :]
    allowed |= torch.eye(L, dtype=torch.bool)[None]  # padded rows attend to themselves (no NaN)
    return allowed[:, None]


def build(args, corpus_records):
    cfg = demo_model()
    cfg["text"]["num_hidden_layers"] = args.layers
    cfg.pop("video")
    if not args.audio:
        cfg.pop("audio")
    cfg["projector"] = {k: v for k, v in cfg["projector"].items() if k in cfg}
    cfg["modality_options"] = {}
    section = ModelSection(**cfg)
    model, processor = build_model(section, corpus_records)
    if args.pos2d:
        hidden = model.config.text_config.hidden_size
        model.projectors["image"] = AddPositions(model.projectors["image"], 16, hidden, args.pos_scale)
    return model, processor


def update(model, opt, loss, step: int, started: float, every: int = 100) -> None:
    """One optimizer step (clipped at 1.0), logging the loss every `every` steps."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step % every == 0:
        print(f"step {step} loss {loss.item():.3f} {time.time() - started:.0f}s", file=sys.stderr, flush=True)


def corpus(types, seed):
    recs = []
    for i, r in enumerate(generate_records(400, seed + 999, modalities="image,audio", split="corpus")):
        recs.append(Record(messages=to_messages(r), source=f"c{i}"))
    for conv in scenes.conversations(np.random.default_rng(seed + 7), 200, turns=8, cfg=SynthConfig()):
        recs.append(Record(messages=conv, source="s"))
    return recs


def train_batches(args, types):
    """Fresh samples every step: single-question records of `types`, or multi-question scenes."""
    root = split_seed(args.seed, "train")
    rng = np.random.default_rng(root)
    qtypes = [QUESTION_TYPES[t] for t in types]
    cfg = SynthConfig()
    lo, hi = (int(x) for x in args.objects.split(","))
    if args.pool:  # a fixed dataset, as the demo's written files: batches drawn from the same records
        pool = [to_messages(qtypes[i % len(qtypes)].build(rng, cfg)) for i in range(args.pool)]
        while True:
            yield [pool[int(j)] for j in rng.integers(0, len(pool), args.batch)]
    while True:
        if args.turns == 1:
            batch = [qtypes[int(rng.integers(len(qtypes)))].build(rng, cfg) for _ in range(args.batch)]
        else:
            batch = list(scenes.conversations(rng, args.batch, turns=args.turns, cfg=cfg, counts=(lo, hi)))
        yield batch


def test_records(types, n, seed):
    out = []
    for t in types:
        rng = np.random.default_rng(split_seed(seed, "test-" + t))
        out += [QUESTION_TYPES[t].build(rng, SynthConfig()) for _ in range(n)]
    return out


@torch.no_grad()
def evaluate(model, processor, records, head=None, layer=1):
    model.eval()
    hits: dict[str, list[int]] = {}
    grounded = []
    for i in range(0, len(records), 64):
        chunk = records[i : i + 64]
        batch = processor.apply_chat_template([to_messages(r) for r in chunk], return_labels=True)
        if PREFIX:
            batch["attention_mask"] = prefix_mask(batch)
        labels = batch.pop("labels")
        out = model(**batch, output_hidden_states=head is not None)
        logits = out.logits
        if head is not None:
            grounded.append(head.accuracy(out.hidden_states[layer], batch["input_ids"], chunk))
        pred = logits[:, :-1].argmax(-1)
        gold = labels[:, 1:]
        ok = ((pred == gold) | (gold == -100)).all(-1)
        for r, o in zip(chunk, ok.tolist()):
            hits.setdefault(r.question_type, []).append(int(o))
    model.train()
    acc = {k: round(sum(v) / len(v), 3) for k, v in hits.items()}
    if grounded:
        acc["grounding_cell"] = round(float(np.nanmean(grounded)), 3)
    return acc


def main():
    global PREFIX
    args = parse()
    PREFIX = args.prefix
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    types = args.types.split(",")
    model, processor = build(args, corpus(types, args.seed))
    groups = [
        {"params": [p for n, p in model.named_parameters() if n.startswith("encoders")], "lr": args.enc_lr},
        {"params": [p for n, p in model.named_parameters() if not n.startswith("encoders")], "lr": args.lr},
    ]
    import grounding

    head = grounding.GroundingHead(model.config.text_config.hidden_size, processor.tokenizer,
                                   target=args.ground_target)
    head.offset = args.ground_offset
    groups.append({"params": list(head.parameters()), "lr": args.lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    base = [g["lr"] for g in groups]
    warm = max(1, args.steps // 20)
    if args.audio_aux_steps:
        import aux_audio
        print("audio aux", aux_audio.pretrain(model, processor, args.audio_aux_steps, seed=args.seed), file=sys.stderr)
    aux.POSITION_HEADS = args.aux_position
    aux.CENTRE_HEAD = args.aux_centre
    aux_acc = aux.pretrain(model, processor, args.aux_steps, seed=args.seed) if args.aux_steps else None
    tests = test_records(types, args.test, args.seed)
    batches = train_batches(args, types)
    model.train()
    t0, tok, sup = time.time(), 0, 0
    for step in range(args.steps):
        f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (args.steps - warm)))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * f
        records = next(batches)
        if records and not isinstance(records[0], list):
            messages = [to_messages(r) for r in records]
        else:
            messages, records = records, []
        batch = processor.apply_chat_template(messages, return_labels=True)
        if args.prefix:
            batch["attention_mask"] = prefix_mask(batch)
        tok += batch["input_ids"].numel()
        sup += int((batch["labels"] != -100).sum())
        if args.ground:
            out = model(**batch, output_hidden_states=True)
            loss = out.loss + args.ground * head.loss(out.hidden_states[args.ground_layer], batch["input_ids"], records)
        else:
            loss = model(**batch).loss
        update(model, opt, loss, step, t0, every=50)
    secs = time.time() - t0
    acc = evaluate(model, processor, tests, head if args.ground else None, args.ground_layer)
    out = {"args": vars(args), "aux": aux_acc, "acc": acc, "mean": round(sum(acc.values()) / len(acc), 3),
           "train_s": round(secs, 1), "s_per_step": round(secs / args.steps, 3),
           "tokens_per_step": tok // args.steps, "supervised_per_step": sup // args.steps}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
