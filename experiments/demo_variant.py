"""Issue 17: the demo pipeline on a subset of modalities with one recipe change, for isolated measurements.

Run: PYTHONPATH=src python experiments/demo_variant.py --modalities video --minutes 1.2 --set video.num_frames=8
Prints one JSON line: per-type exact match on the demo's test split.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from omnifuse.demo.pipeline import synthesize_test, warm_start
from omnifuse.demo.recipe import demo_recipe
from omnifuse.evaluation.dataset import eval_items
from omnifuse.evaluation.runner import evaluate
from omnifuse.modeling.folder import load_omni_folder
from omnifuse.training.recipe import validate_recipe
from omnifuse.training.trainer import train

VARIANTS = {
    "video.num_frames=8": lambda r: r["model"]["modality_options"]["video"]["processing"].update(num_frames=8),
    "video.mlp": lambda r: r["model"]["projector"].update(video={"type": "mlp", "norm": True}),
    "llm.layers=4": lambda r: r["model"]["text"].update(num_hidden_layers=4),
    "batch=16": lambda r: [s.update(batch_size=16) for s in r["stages"]],
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--modalities", default="video")
    p.add_argument("--minutes", type=float, default=1.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], choices=sorted(VARIANTS))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="variant-"))
    test_file = synthesize_test(out, args.seed, 300, args.modalities)
    recipe = demo_recipe(out / "model", args.seed, args.minutes, args.modalities)
    for name in args.set:
        VARIANTS[name](recipe)
    started = time.time()
    warm_start(recipe, out / "warm", args.seed, args.modalities)
    train(validate_recipe(recipe, "variant"))
    seconds = time.time() - started
    model, processor = load_omni_folder(out / "model")
    result = evaluate(model, processor, eval_items(test_file))
    print(json.dumps({"args": vars(args), "acc": result["per_question"], "seconds": round(seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
