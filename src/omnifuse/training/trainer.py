"""`train(recipe)`: run a recipe's stages in order, with checkpoints, resume, LoRA and DDP.

A run writes into `output_dir`: the final model + processor (`save_pretrained`), `loss_curve.png`,
TensorBoard events under `runs/`, `checkpoints/step-N` (resumed from automatically), and with LoRA
`adapter/` (the adapter alone; the saved model has it merged). Launch with `torchrun
--nproc_per_node N` for data parallelism; `batch_size` is per process, so N processes with batch B
train like one process with batch N*B.

Example:
    >>> from omnifuse.training.trainer import load_recipe, train
    >>> train(load_recipe("recipes/benchmark_align_sft.yaml", ["output_dir=runs/bench"]))  # doctest: +SKIP
    {'task': 'train', 'steps': 60, 'final_loss': 0.41, 'output_dir': 'runs/bench'}

Command line: `python -m omnifuse.training.trainer RECIPE.yaml [key=value ...]` (or `omnifuse train`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed

from omnifuse.benchmark.dataset import BenchmarkDataset
from omnifuse.data.collator import MultimodalCollator
from omnifuse.data.sources import MessagesDataset
from omnifuse.errors import OmnifuseInputError
from omnifuse.modeling.model import OmniForConditionalGeneration
from omnifuse.processing.processor import OmniProcessor
from omnifuse.safety.paths import check_output_dir, make_output_dir
from omnifuse.training import checkpoint as ckpt
from omnifuse.training.build import build_model, load_datasets
from omnifuse.training.distributed import make_accelerator
from omnifuse.training.loop import StepMetrics, evaluate, optimizer_step, rank_loader
from omnifuse.training.lora import BASE_MODEL_DIR, base_of, merge_lora, save_adapter, save_base_model
from omnifuse.training.modality_lora import finish_modality_lora
from omnifuse.training.monitor import Monitor, log, plot_loss_curve
from omnifuse.training.preflight import check_component_configs
from omnifuse.training.recipe import LoraSection, Recipe, RecipeError, StageSection, load_recipe
from omnifuse.training.resume import RECIPE_FILE, resume_model
from omnifuse.training.schedule import StagePlan, make_scheduler
from omnifuse.training.stages import describe_trainable, is_projector_only, param_groups, prepare_stage_model

LOSS_CURVE = "loss_curve.png"


@dataclass
class Run:
    """What every stage of one run shares."""

    recipe: Recipe
    accelerator: Accelerator
    processor: OmniProcessor
    collator: MultimodalCollator
    train_set: MessagesDataset | BenchmarkDataset
    eval_set: MessagesDataset | None
    state: ckpt.TrainerState
    monitor: Monitor
    resume_from: Path | None  # the checkpoint to load when stage `state.stage` is set up

    @property
    def output_dir(self) -> Path:
        return Path(self.recipe.output_dir)

    @property
    def checkpoint_root(self) -> Path:
        return self.output_dir / ckpt.CHECKPOINT_DIR

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


@dataclass
class StageRun:
    """One stage's prepared objects and plan."""

    index: int
    stage: StageSection
    plan: StagePlan
    model: torch.nn.Module | None  # accelerate-prepared (DDP-wrapped under torchrun); None once finished
    optimizer: Any
    scheduler: Any


def train(recipe: Recipe) -> dict[str, Any]:
    """Train per the recipe, resuming from the newest complete checkpoint in `output_dir/checkpoints`.

    Returns `{"task": "train", "steps": N, "final_loss": L, "output_dir": DIR}`.
    """
    claim_output_dir(recipe, is_main=os.environ.get("RANK", "0") == "0")  # before accelerate sets processes up
    accelerator = make_accelerator(recipe)
    run, model = start_run(recipe, accelerator)
    try:
        for index in range(run.state.stage, len(recipe.stages)):
            model = run_stage(run, model, index)
        finish_run(run, model)
    finally:
        run.monitor.close()
    final = run.state.history[-1][1] if run.state.history else None
    return {"task": "train", "steps": run.state.global_step, "final_loss": final, "output_dir": recipe.output_dir}


def claim_output_dir(recipe: Recipe, is_main: bool) -> None:
    """Refuse an unsafe output_dir before anything is written, then mark it as this run's (checkpoints/)."""
    section = recipe.model
    reads = [section.from_pretrained, section.tokenizer.path if section.tokenizer else None]
    reads += [c for c in (section.text, section.image, section.audio, section.video) if isinstance(c, str)]
    target = check_output_dir(
        recipe.output_dir,
        what="output_dir",
        overwrite=recipe.overwrite,
        own_marker=ckpt.CHECKPOINT_DIR,
        protected=reads,
    )
    if is_main:
        make_output_dir(target, f"output_dir {recipe.output_dir}", marker=ckpt.CHECKPOINT_DIR)


def start_run(recipe: Recipe, accelerator: Accelerator) -> tuple[Run, OmniForConditionalGeneration]:
    """Load the data, then either resume from the newest checkpoint or build the model afresh."""
    root = Path(recipe.output_dir) / ckpt.CHECKPOINT_DIR
    if accelerator.is_main_process:
        for stale in ckpt.remove_partial(root):
            log(f"removed an interrupted checkpoint save: {stale}")
    accelerator.wait_for_everyone()
    latest = ckpt.latest_intact_checkpoint(root, warn=lambda text: log(text, accelerator.is_main_process))
    train_set, eval_set = load_datasets(recipe.data)
    if latest is not None:
        model, processor, state = resume_model(recipe, accelerator, latest, train_set)
    else:
        set_seed(recipe.seed)
        check_component_configs(recipe.model)
        model, processor = build_model(recipe.model, train_set.corpus())
        adapter_base = str(Path(recipe.model.from_pretrained).resolve()) if recipe.model.from_pretrained else None
        state = ckpt.TrainerState(
            adapter_base=adapter_base, world_size=accelerator.num_processes, train_samples=len(train_set)
        )
    collator = MultimodalCollator(
        processor,
        max_length=recipe.data.max_length,
        packing=recipe.data.packing,
        pack_length=recipe.data.max_length,
        attn_implementation=model.language_model.config._attn_implementation or "sdpa",
        cache_encoded=recipe.data.cache_media,
    )
    monitor = Monitor(recipe.output_dir, accelerator.is_main_process, state.global_step)
    run = Run(recipe, accelerator, processor, collator, train_set, eval_set, state, monitor, latest)
    return run, model


def run_stage(run: Run, model: OmniForConditionalGeneration, index: int) -> OmniForConditionalGeneration:
    """Set stage `index` up (or restore it from a checkpoint), train it, and return the plain model."""
    stage, state = run.recipe.stages[index], run.state
    if stage.name == "contrastive":  # the embedding heads' stage: its own step, same plan/checkpoints
        from omnifuse.embeddings.stage import run_contrastive_stage

        return run_contrastive_stage(run, model, index)
    resuming = run.resume_from is not None and state.stage == index
    if not resuming:
        state.stage, state.epoch, state.step_in_epoch, state.stage_step = index, 0, 0, 0
        state.stage_starts.append(state.global_step)
        if isinstance(stage.lora, LoraSection):
            state.adapter_base = ensure_adapter_base(run, model, index)
    trainable = prepare_stage_model(model, stage, index)
    trainable.train()
    title = f"stage {index + 1}/{len(run.recipe.stages)} {stage.name}{' (LoRA)' if stage.lora else ''}"
    log(describe_trainable(trainable, title), run.is_main)
    sr = prepare_stage(run, trainable, index)
    if resuming:
        ckpt.load_training_states(run.accelerator, run.resume_from, sr.model, sr.optimizer, sr.scheduler)
        if not ckpt.restore_rng_states(ckpt.rng_file(run.resume_from, run.accelerator.process_index)):
            set_seed(run.recipe.seed + state.global_step + run.accelerator.process_index)
        run.resume_from = None
    run.monitor.start_stage(title, sr.plan.total_steps, state.stage_step)
    train_stage(run, sr)
    return finish_stage(run, sr)


def prepare_stage(run: Run, trainable: torch.nn.Module, index: int) -> StageRun:
    stage = run.recipe.stages[index]
    plan = StagePlan.for_stage(stage, len(run.train_set), run.accelerator.num_processes, run.recipe.seed, index)
    if plan.micro_batches_per_epoch == 0:
        raise RecipeError(
            f"{len(run.train_set)} training samples cannot give each process a sample",
            path=f"stages.{index}.batch_size",
        )
    try:
        groups = param_groups(trainable, stage.lr, stage.weight_decay)
    except ValueError as err:  # e.g. align on a text-only model: it has no projector
        raise RecipeError(str(err), path=f"stages.{index}.name") from None
    optimizer = torch.optim.AdamW(groups)
    scheduler = make_scheduler(optimizer, plan.total_steps, stage.warmup_ratio, stage.decay_ratio)
    model, optimizer, scheduler = run.accelerator.prepare(trainable, optimizer, scheduler)
    return StageRun(index, stage, plan, model, optimizer, scheduler)


def train_stage(run: Run, sr: StageRun) -> None:
    """Optimizer steps until the stage's total, epoch by epoch, from the saved data position."""
    state, plan = run.state, sr.plan
    while state.stage_step < plan.total_steps:
        windows = plan.step_windows(state.epoch)[state.step_in_epoch :]
        global_batches = plan.micro_batches(state.epoch)
        ordered = [global_batches[i] for window in windows for i in window]
        seed = run.recipe.seed + 1000 * sr.index + state.epoch
        loader = iter(
            rank_loader(run.train_set, ordered, run.accelerator, run.collator, run.recipe.data.num_workers, seed)
        )
        for window in windows:
            started = time.perf_counter()
            micro = [next(loader) for _ in window]
            metrics = optimizer_step(
                run.accelerator, sr.model, sr.optimizer, sr.scheduler, micro, sr.stage.max_grad_norm
            )
            advance(state, epoch_steps=plan.steps_per_epoch)
            after_step(run, sr, metrics, time.perf_counter() - started)
            if state.stage_step >= plan.total_steps or state.step_in_epoch == 0:
                break


def advance(state: ckpt.TrainerState, epoch_steps: int) -> None:
    """Move the data position one optimizer step on (to the next epoch after its last step)."""
    state.global_step += 1
    state.stage_step += 1
    state.step_in_epoch += 1
    if state.step_in_epoch == epoch_steps:
        state.epoch, state.step_in_epoch = state.epoch + 1, 0


def after_step(run: Run, sr: StageRun, metrics: StepMetrics, seconds: float) -> None:
    """Record the step (history, bar, TensorBoard), evaluate and checkpoint when due."""
    state = run.state
    if metrics.loss is None:
        log(f"step {state.global_step}: every sample of a micro-batch window was dropped; step skipped", run.is_main)
    else:
        state.history.append([state.global_step, metrics.loss])
    lrs = {group["name"]: group["lr"] for group in sr.optimizer.param_groups}
    due = state.global_step % run.recipe.log_every == 0 or state.stage_step == sr.plan.total_steps
    tokens_per_s = metrics.tokens / max(seconds, 1e-9)
    run.monitor.step(state.global_step, metrics.loss, lrs, tokens_per_s, record=due, grad_norm=metrics.grad_norm)
    if run.eval_set is not None and sr.stage.eval_every and state.stage_step % sr.stage.eval_every == 0:
        run_eval(run, sr)
    generate = run.recipe.data.generate
    if generate is not None and generate.adapt_every and state.global_step % generate.adapt_every == 0:
        adapt_mix(run, sr)
    every = run.recipe.checkpoints.every
    if (every and state.global_step % every == 0) or state.stage_step == sr.plan.total_steps:
        save(run, sr)


def adapt_mix(run: Run, sr: StageRun) -> None:
    """Re-weight the generated question types by the model's accuracy on fresh probe records."""
    accuracy = run.train_set.adapt(run.accelerator.unwrap_model(sr.model), run.processor, probe=run.state.global_step)
    run.state.data_mixture = run.train_set.mixture.state_dict()
    weakest = ", ".join(f"{name} {value:.2f}" for name, value in sorted(accuracy.items(), key=lambda kv: kv[1])[:4])
    grounding = run.train_set.grounding_accuracy
    grounded = f"; grounding {grounding:.2f}" if grounding is not None else ""
    if run.train_set.lookup_accuracy is not None:
        grounded += f", lookup {run.train_set.lookup_accuracy:.2f}"
    log(f"step {run.state.global_step}: probe accuracy, weakest types: {weakest}{grounded}", run.is_main)


def run_eval(run: Run, sr: StageRun) -> float:
    loss = evaluate(
        run.accelerator, sr.model, run.eval_set, run.collator, sr.stage.batch_size, run.recipe.data.num_workers
    )
    run.state.eval_history.append([run.state.global_step, loss])
    run.monitor.scalars(run.state.global_step, {"eval/loss": loss})
    log(f"step {run.state.global_step}: eval loss {loss:.4f}", run.is_main)
    return loss


def save(run: Run, sr: StageRun) -> Path:
    def extra_files(folder: Path) -> None:
        base_of(run.accelerator.unwrap_model(sr.model)).config.save_pretrained(folder)
        run.processor.save_pretrained(folder)
        (folder / RECIPE_FILE).write_text(run.recipe.model_dump_json(indent=1))

    return ckpt.save_checkpoint(
        run.accelerator,
        run.checkpoint_root,
        run.state,
        sr.model,
        sr.optimizer,
        sr.scheduler,
        extra_files=extra_files,
        keep=run.recipe.checkpoints.keep,
    )


def ensure_adapter_base(run: Run, model: OmniForConditionalGeneration, index: int) -> str:
    """A folder with the weights this LoRA stage starts from, so its adapter can be loaded later."""
    if run.state.adapter_base:
        return run.state.adapter_base
    folder = adapter_dir(run, index) / BASE_MODEL_DIR
    if run.is_main:
        save_base_model(model, run.processor, folder)
    run.accelerator.wait_for_everyone()
    return BASE_MODEL_DIR  # relative to the adapter folder, so the output folder can move


def adapter_dir(run: Run, index: int) -> Path:
    """`adapter/`, or `adapter-<stage>/` when a recipe has several LoRA stages."""
    lora_stages = [i for i, s in enumerate(run.recipe.stages) if s.lora is not None]
    return run.output_dir / ("adapter" if len(lora_stages) == 1 else f"adapter-{index}")


def finish_stage(run: Run, sr: StageRun) -> OmniForConditionalGeneration:
    """Release the stage's prepared objects; a LoRA stage saves its adapter and merges it."""
    accelerator, state = run.accelerator, run.state
    run.monitor.close_bar()
    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(sr.model)
    # Drop every reference to the DDP wrapper (its gradient hooks go with it) and the optimizer state.
    sr.model = sr.optimizer = sr.scheduler = None
    accelerator.free_memory()
    model = trained
    if isinstance(sr.stage.lora, dict):  # a mixture stays unmerged: its adapters are saved beside the model
        model = finish_modality_lora(trained, run.output_dir if run.is_main else None)
        accelerator.wait_for_everyone()
    elif sr.stage.lora is not None:
        if run.is_main:
            folder = save_adapter(trained, adapter_dir(run, sr.index), state.adapter_base)
            run.processor.save_pretrained(folder)
            log(f"saved the LoRA adapter to {folder}")
        accelerator.wait_for_everyone()
        model = merge_lora(trained)
    if not is_projector_only(sr.stage):
        state.adapter_base = None  # the weights outside the projectors changed: no saved folder holds them
    state.stage = sr.index + 1
    return model


def finish_run(run: Run, model: OmniForConditionalGeneration) -> None:
    """Save the final model and processor, and draw the loss curve."""
    run.accelerator.wait_for_everyone()
    if run.is_main:
        model.save_pretrained(run.output_dir)
        run.processor.save_pretrained(run.output_dir)
        names = [s.name for s in run.recipe.stages][: len(run.state.stage_starts)]
        plot_loss_curve(
            run.state.history, run.state.eval_history, run.state.stage_starts, names, run.output_dir / LOSS_CURVE
        )
        log(f"saved the model, processor and {LOSS_CURVE} to {run.output_dir}")
    run.accelerator.wait_for_everyone()


def main(argv: list[str] | None = None) -> int:
    """`python -m omnifuse.training.trainer RECIPE.yaml [key=value ...]`; exit 2 on a bad recipe."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.split("Example:")[0].strip(), file=sys.stderr)
        print("usage: python -m omnifuse.training.trainer RECIPE.yaml [key=value ...]", file=sys.stderr)
        return 2 if not args else 0
    try:
        result = train(load_recipe(args[0], args[1:]))
    except OmnifuseInputError as err:  # bad recipe, data or paths: the user can act on it
        print(f"error: {err}", file=sys.stderr)
        return 2
    if PartialState().is_main_process:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
