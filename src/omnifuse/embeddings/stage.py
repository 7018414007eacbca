"""The `contrastive` training stage: align each modality's pooled encoder output with a text tower.

Run by the trainer like every stage (plan, checkpoints, resume, DDP); only the step differs. Data are
messages records whose assistant text is the caption of the (first) medium in the user turn. The heads
are written beside the model at the end of the stage (`embedding_heads.safetensors` + `.json`).

Example (recipe):
    stages: [{name: contrastive, max_steps: 300, batch_size: 64, lr: {encoders: 1e-3},
              contrastive: {loss: siglip, dim: 64}}]
"""

from __future__ import annotations

import contextlib
import time
import zlib
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from omnifuse.embeddings.embed import Embedder
from omnifuse.embeddings.heads import EmbeddingHeads, HeadsConfig, save_heads
from omnifuse.embeddings.loss import contrastive_loss
from omnifuse.embeddings.pairs import ContrastiveCollator, record_pair
from omnifuse.embeddings.settings import ContrastiveSection
from omnifuse.embeddings.towers import build_text_tower
from omnifuse.modeling.encoders import probe_encoder
from omnifuse.training import checkpoint as ckpt
from omnifuse.training.loop import StepMetrics, apply_update, rank_loader
from omnifuse.training.monitor import log
from omnifuse.training.schedule import StagePlan, make_scheduler
from omnifuse.training.stages import describe_trainable, lr_group, trained_parts


class ContrastiveModel(Embedder):
    """The Embedder whose forward is this rank's share of the contrastive loss (what DDP wraps)."""

    @property
    def config(self):  # the trainer's checkpoint writes the composite model's config
        return self.model.config

    def forward(self, items, texts: list[str]) -> torch.Tensor:
        media, text = self.media_vectors(items), self.text_vectors(texts)
        # Equal captions are positives for each other too (the benchmark repeats simple captions).
        ids = torch.tensor([zlib.crc32(t.encode()) for t in texts], device=media.device)
        heads = self.heads
        return contrastive_loss(media, text, heads.logit_scale, heads.logit_bias, heads.config.loss, ids)


def heads_for(model, settings: ContrastiveSection, text_dim: int) -> EmbeddingHeads:
    """Fresh heads for every modality of the model, sized from its encoders (probed, no forward pass)."""
    sizes = {}
    for name in sorted(model.config.modality_specs()):
        owner = model.config.encoder_spec_for(name)
        sizes[name] = probe_encoder(owner.encoder).hidden_size * owner.num_feature_layers
    tower = settings.text_tower if settings.text_tower == "lm" else str(Path(settings.text_tower).resolve())
    config = HeadsConfig(settings.dim, sizes, text_dim, settings.pooling, settings.loss, tower)
    return EmbeddingHeads(config)


def build_contrastive_model(run, model, stage) -> ContrastiveModel:
    settings = stage.contrastive or ContrastiveSection()
    tower = build_text_tower(settings.text_tower, model, run.processor.tokenizer)
    torch.manual_seed(run.recipe.seed)
    heads = heads_for(model, settings, tower.hidden_size)
    return ContrastiveModel(model, run.processor, heads, tower).to(model.device)


def param_groups(cm: ContrastiveModel, stage) -> list[dict]:
    """Encoders / LM parts by the stage's rates, the heads by `contrastive.heads_lr`."""
    settings = stage.contrastive or ContrastiveSection()
    grouped: dict[str, list] = {}
    seen: set[int] = set()
    # Sorted: a model rebuilt from its saved config may list modalities in another order, and the
    # optimizer state of a resumed run is matched to parameters by position.
    for part, module in sorted(cm.model.part_modules().items()):
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                grouped.setdefault(lr_group(part), []).append(p)
    groups = [{"name": n, "params": ps, "lr": getattr(stage.lr, n)} for n, ps in grouped.items()]
    heads = [p for _, p in sorted(cm.heads.named_parameters()) if p.requires_grad]
    return groups + [{"name": "heads", "params": heads, "lr": settings.heads_lr}]


def contrastive_step(accelerator: Accelerator, model, optimizer, scheduler, micro: list, max_grad_norm) -> StepMetrics:
    """One optimizer step over this rank's micro-batches (each its own global contrastive batch)."""
    world = accelerator.num_processes
    loss_sum = torch.zeros((), device=accelerator.device)
    for k, batch in enumerate(micro):
        last = k == len(micro) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            loss = model(batch["items"], batch["texts"]) * (world / len(micro))  # DDP averages over ranks
            accelerator.backward(loss)
        loss_sum += loss.detach()
    grad_norm = apply_update(accelerator, model, optimizer, scheduler, max_grad_norm)
    items = torch.tensor(float(sum(len(b["texts"]) for b in micro)), device=accelerator.device)
    mean_loss = float(accelerator.reduce(loss_sum, "sum")) / world
    return StepMetrics(mean_loss, int(accelerator.reduce(items, "sum")), 0, grad_norm)


def run_contrastive_stage(run, model, index: int):
    """The trainer's `run_stage` for a contrastive stage; returns the plain composite model."""
    from omnifuse.training.trainer import StageRun, advance, after_step

    stage, state = run.recipe.stages[index], run.state
    for record in run.train_set.records:  # every record must be a (medium, caption) pair, before step 1
        record_pair(record.messages, record.source)
    resuming = run.resume_from is not None and state.stage == index
    if not resuming:
        state.stage, state.epoch, state.step_in_epoch, state.stage_step = index, 0, 0, 0
        state.stage_starts.append(state.global_step)
    model.requires_grad_(False)
    model.unfreeze(*trained_parts(model, stage))
    cm = build_contrastive_model(run, model, stage)
    cm.train()
    title = f"stage {index + 1}/{len(run.recipe.stages)} contrastive ({cm.heads.config.loss})"
    log(describe_trainable(model, title) + f" | heads {sum(p.numel() for p in cm.heads.parameters()):,}", run.is_main)
    plan = StagePlan.for_stage(stage, len(run.train_set), run.accelerator.num_processes, run.recipe.seed, index)
    optimizer = torch.optim.AdamW(param_groups(cm, stage), weight_decay=stage.weight_decay)
    scheduler = make_scheduler(optimizer, plan.total_steps, stage.warmup_ratio)
    prepared, optimizer, scheduler = run.accelerator.prepare(cm, optimizer, scheduler)
    sr = StageRun(index, stage, plan, prepared, optimizer, scheduler)
    if resuming:
        ckpt.load_training_states(run.accelerator, run.resume_from, sr.model, sr.optimizer, sr.scheduler)
        if not ckpt.restore_rng_states(ckpt.rng_file(run.resume_from, run.accelerator.process_index)):
            set_seed(run.recipe.seed + state.global_step + run.accelerator.process_index)
        run.resume_from = None
    run.monitor.start_stage(title, plan.total_steps, state.stage_step)
    collator = ContrastiveCollator(run.processor, cache=run.recipe.data.cache_media)
    while state.stage_step < plan.total_steps:
        windows = plan.step_windows(state.epoch)[state.step_in_epoch :]
        batches = plan.micro_batches(state.epoch)
        ordered = [batches[i] for window in windows for i in window]
        seed = run.recipe.seed + 1000 * index + state.epoch
        loader = iter(rank_loader(run.train_set, ordered, run.accelerator, collator, run.recipe.data.num_workers, seed))
        for window in windows:
            started = time.perf_counter()
            micro = [next(loader) for _ in window]
            metrics = contrastive_step(run.accelerator, sr.model, optimizer, scheduler, micro, stage.max_grad_norm)
            advance(state, epoch_steps=plan.steps_per_epoch)
            after_step(run, sr, metrics, time.perf_counter() - started)
            if state.stage_step >= plan.total_steps or state.step_in_epoch == 0:
                break
    return finish_contrastive_stage(run, sr)


def finish_contrastive_stage(run, sr):
    """Write the heads beside the model (main process) and hand the plain model back to the trainer."""
    run.monitor.close_bar()
    run.accelerator.wait_for_everyone()
    trained = run.accelerator.unwrap_model(sr.model)
    sr.model = sr.optimizer = sr.scheduler = None
    run.accelerator.free_memory()
    if run.is_main:
        path = save_heads(trained.heads, run.output_dir)
        log(f"saved the embedding heads to {path}")
    run.state.adapter_base = None  # the encoders changed: no saved base folder holds them
    run.state.stage = sr.index + 1
    return trained.model
