"""Issue 17: where a trained demo model loses binding. Reads a saved model (`OUT/model`) on fresh records.

Prints, for colour, shape and position questions, how often each head of the first LM layer looks hardest
(attention argmax) from the grounded word at its object's image token, and the first head's mean weight
there; how wrong colour answers split (another object's colour, or a colour not in the scene); the
count-vs-beeps answers right per (shapes, beeps) pair; and caption misses with the number of objects.

Run: PYTHONPATH=src python experiments/binding_probe.py OUT/model [--records 200]
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch

from omnifuse import OmniForConditionalGeneration
from omnifuse.benchmark.common import SynthConfig
from omnifuse.benchmark.generate import to_messages
from omnifuse.benchmark.image import build_caption, build_color, build_position, build_shape
from omnifuse.benchmark.mixed import build_count_beeps
from omnifuse.modeling.grounding import looked_at_tokens
from omnifuse.processing.processor import OmniProcessor


def forward(model, processor, records, attentions=False):
    batch = processor.apply_chat_template([to_messages(r) for r in records], return_labels=True)
    labels = batch.pop("labels")[:, 1:]
    xy = batch.pop("grounding_xy", None)
    with torch.no_grad():
        out = model(**batch, output_attentions=attentions)
    return batch["input_ids"], labels, xy, out


def lookups(model, processor, rng, n):
    for builder in (build_color, build_shape, build_position):
        ids, _, xy, out = forward(model, processor, [builder(rng, SynthConfig()) for _ in range(n)], True)
        where, keys = (xy[..., 0] >= 0).nonzero(), looked_at_tokens(ids, model.image_placeholder_id(), xy)
        weights = out.attentions[0][where[:, 0], :, where[:, 1]]  # (words, heads, keys)
        per_head = (weights.argmax(-1) == keys[:, None]).float().mean(0)
        on_cell = weights[torch.arange(len(keys)), 0, keys].mean()
        looks = [round(v, 2) for v in per_head.tolist()]
        print(f"{builder.__name__}: first layer, per head, looks at the cell {looks}; head 0 weight {on_cell:.2f}")


def first_answer_tokens(labels, logits):
    rows = range(len(labels))
    at = [int((labels[i] != -100).nonzero()[0]) for i in rows]
    return [int(logits[i, p].argmax()) for i, p in zip(rows, at)], [int(labels[i, p]) for i, p in zip(rows, at)]


def colour_errors(model, processor, rng, n):
    records = [build_color(rng, SynthConfig()) for _ in range(n)]
    _, labels, _, out = forward(model, processor, records)
    predicted, wanted = first_answer_tokens(labels, out.logits[:, :-1])
    kinds = collections.Counter()
    for record, got, want in zip(records, predicted, wanted):
        colours = [s["color"] for s in record.facts["shapes"]]
        word = processor.tokenizer.decode([got]).strip()
        kind = "right" if got == want else "another object's colour" if word in colours else "not in the scene"
        kinds[(kind, len(colours))] += 1
    print("colour answers (kind, objects):", sorted(kinds.items()))


def count_beeps(model, processor, rng, n):
    records = [build_count_beeps(rng, SynthConfig()) for _ in range(n)]
    _, labels, _, out = forward(model, processor, records)
    predicted, wanted = first_answer_tokens(labels, out.logits[:, :-1])
    table = collections.defaultdict(lambda: [0, 0])
    for record, got, want in zip(records, predicted, wanted):
        key = (len(record.facts["shapes"]), record.facts["beeps"])
        table[key][0] += got == want
        table[key][1] += 1
    print("count-vs-beeps right / asked per (shapes, beeps):", {k: tuple(v) for k, v in sorted(table.items())})


def captions(model, processor, rng, n):
    records = [build_caption(rng, SynthConfig()) for _ in range(n)]
    _, labels, _, out = forward(model, processor, records)
    predicted = out.logits[:, :-1].argmax(-1)
    misses = collections.Counter()
    for i, record in enumerate(records):
        keep = labels[i] != -100
        right = bool((predicted[i][keep] == labels[i][keep]).all())
        misses[(len(record.facts["shapes"]), right)] += 1
        if not right:
            decode = processor.tokenizer.decode
            print(f"  caption {decode(labels[i][keep])!r} -> {decode(predicted[i][keep])!r}")
    print("captions (objects, right):", sorted(misses.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = OmniForConditionalGeneration.from_pretrained(args.model).eval()
    model.language_model.set_attn_implementation("eager")
    processor = OmniProcessor.from_pretrained(args.model)
    rng = np.random.default_rng(7)
    lookups(model, processor, rng, args.records // 2)
    colour_errors(model, processor, rng, args.records)
    count_beeps(model, processor, rng, args.records)
    captions(model, processor, rng, args.records)


if __name__ == "__main__":
    main()
