"""Resuming a run: the newest checkpoint must come from the same stages, seed and data.

`omnifuse train` into an output folder that holds checkpoints continues from the newest complete
one: the same recipe stages (`RESUME_KEYS`) and seed, the same number of usable records, and for a
generated dataset with an adaptive mix the mix's saved state.
"""

from __future__ import annotations

import json
from pathlib import Path

from accelerate import Accelerator

from omnifuse.benchmark.dataset import BenchmarkDataset
from omnifuse.data.sources import MessagesDataset
from omnifuse.modeling.folder import load_omni_folder
from omnifuse.modeling.model import OmniForConditionalGeneration
from omnifuse.processing.processor import OmniProcessor
from omnifuse.training import checkpoint as ckpt
from omnifuse.training.monitor import log
from omnifuse.training.recipe import Recipe, RecipeError

RECIPE_FILE = "recipe.json"
# Stage settings that decide the data order and the optimizer state; a resumed run must share them.
RESUME_KEYS = ("name", "epochs", "max_steps", "batch_size", "grad_accum", "lora")


def resume_model(
    recipe: Recipe, accelerator: Accelerator, folder: Path, train_set: MessagesDataset | BenchmarkDataset
) -> tuple[OmniForConditionalGeneration, OmniProcessor, ckpt.TrainerState]:
    """The checkpoint's architecture and processor (its weights are loaded once its stage is set up); an
    adaptive generated mix gets its saved state back, so the records after the checkpoint are the same."""
    check_same_recipe(recipe, folder)
    state = ckpt.read_state(folder)
    train_samples = len(train_set)
    if state.train_samples != train_samples:
        raise RecipeError(
            f"holds {train_samples} usable records, but {folder} was trained on {state.train_samples}, "
            "so the saved data position would point elsewhere",
            path="data.train",
            suggestion="resume with the same data, or use a new output_dir",
        )
    log(f"resuming from {folder} (stage {state.stage + 1}, step {state.global_step})", accelerator.is_main_process)
    if state.world_size != accelerator.num_processes:
        log(
            f"warning: {folder} was written by {state.world_size} process(es), this run has "
            f"{accelerator.num_processes}: the data order after it differs",
            accelerator.is_main_process,
        )
    if isinstance(train_set, BenchmarkDataset) and train_set.mixture is not None:
        train_set.mixture.load_state_dict(state.data_mixture)
    model, processor = load_omni_folder(folder, weights=False)
    return model, processor, state


def check_same_recipe(recipe: Recipe, folder: Path) -> None:
    saved = json.loads((folder / RECIPE_FILE).read_text())
    old = [{k: s.get(k) for k in RESUME_KEYS} for s in saved["stages"]]
    new = [{k: s.get(k) for k in RESUME_KEYS} for s in recipe.model_dump()["stages"]]
    if old != new or saved.get("seed") != recipe.seed:
        raise RecipeError(
            f"{folder} was written by a recipe with other stages or seed, so it cannot be resumed",
            path="output_dir",
            suggestion="choose a new output_dir, or delete its checkpoints/ to start over",
        )
