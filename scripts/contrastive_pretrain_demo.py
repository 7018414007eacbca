"""Does a contrastive-pretrained image encoder help the demo's image questions? (image-only, short runs)

Usage: OMP_NUM_THREADS=1 python scripts/contrastive_pretrain_demo.py EMB_MODEL_DIR WORK_DIR
EMB_MODEL_DIR is `runs/emb/model` from `python -m omnifuse.embeddings.benchmark` (the demo's ResNet config).
Trains the demo recipe (image modalities only, 25 align + 475 full steps) from a fresh encoder and from the
pretrained one, evaluates both on 250 held-out image questions, prints one eval JSON line per variant.
"""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from omnifuse.demo.recipe import demo_recipe
from omnifuse.modeling.folder import load_omni_folder


def main(emb_model: str, work: str) -> None:
    root = Path(work)
    root.mkdir(parents=True, exist_ok=True)
    pretrained = root / "resnet_pre"
    if not pretrained.exists():
        model, _ = load_omni_folder(emb_model)
        model.encoders["image"].model.save_pretrained(pretrained)  # a plain transformers ResNet folder
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    omni = [sys.executable, "-m", "omnifuse.cli"]
    for split, n in (("train", 3000), ("test", 250)):
        if not (root / split / "data.jsonl").exists():
            synth = ["synth", "--out", str(root / split), "--n", str(n), "--split", split, "--modalities", "image"]
            subprocess.run(omni + synth, check=True, env=env, stdout=subprocess.DEVNULL)
    for variant in ("scratch", "pretrained"):
        recipe = demo_recipe(root / "train" / "data.jsonl", root / f"run-{variant}", seed=0, minutes=1)
        for key in ("audio", "video", "modality_options"):
            recipe["model"].pop(key, None)
        recipe["model"]["projector"] = {"image": {"type": "mlp", "norm": True}}
        if variant == "pretrained":
            recipe["model"]["image"] = str(pretrained)
        recipe["stages"][0]["max_steps"], recipe["stages"][1]["max_steps"] = 25, 475
        path = root / f"recipe-{variant}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        subprocess.run(omni + ["train", str(path)], check=True, env=env, stdout=subprocess.DEVNULL)
        evaluation = ["eval", "--model", str(root / f"run-{variant}"), "--data", str(root / "test" / "data.jsonl")]
        out = subprocess.run(omni + evaluation, check=True, env=env, capture_output=True, text=True).stdout
        print(variant, out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
