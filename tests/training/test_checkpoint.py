"""Checkpoints: atomic saves, pruning, exact state restore, data order, and SIGKILL-then-resume equivalence."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from omnifuse.training import checkpoint as ckpt
from omnifuse.training.recipe import RecipeError, validate_recipe
from omnifuse.training.schedule import StagePlan, make_scheduler, rank_share
from omnifuse.training.trainer import train

ALIGN_STEPS, SFT_STEPS = 6, 2  # align crosses an epoch (40 samples / 8 = 5 steps); sft uses LoRA dropout


# -- the checkpoint files --


class Tiny:
    """A model, optimizer and scheduler small enough to save many times."""

    def __init__(self, accelerator: Accelerator, seed: int = 0):
        torch.manual_seed(seed)
        model = torch.nn.Linear(4, 3)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        scheduler = make_scheduler(optimizer, total_steps=10, warmup_ratio=0.2)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)

    def step(self) -> None:
        self.model(torch.randn(2, 4)).sum().backward()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()

    def save(self, accelerator, root, step, keep=2):
        state = ckpt.TrainerState(global_step=step, stage_step=step)
        return ckpt.save_checkpoint(accelerator, root, state, self.model, self.optimizer, self.scheduler, keep=keep)


@pytest.fixture
def accelerator() -> Accelerator:
    return Accelerator(step_scheduler_with_optimizer=False)


@pytest.mark.parametrize("crash_in", ["_write_synced", "_replace_dir"])
def test_a_crash_during_a_save_never_leaves_a_complete_looking_checkpoint(tmp_path, accelerator, monkeypatch, crash_in):
    tiny = Tiny(accelerator)
    tiny.step()
    first = tiny.save(accelerator, tmp_path, step=1)
    monkeypatch.setattr(ckpt, crash_in, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    tiny.step()
    with pytest.raises(KeyboardInterrupt):
        tiny.save(accelerator, tmp_path, step=2)
    assert ckpt.latest_checkpoint(tmp_path) == first
    assert (tmp_path / ".tmp-step-2").is_dir() and not (tmp_path / "step-2").exists()
    assert ckpt.remove_partial(tmp_path) == [tmp_path / ".tmp-step-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-1"]


def test_only_the_last_k_complete_checkpoints_are_kept(tmp_path, accelerator):
    tiny = Tiny(accelerator)
    for step in range(1, 5):
        tiny.save(accelerator, tmp_path, step=step, keep=2)
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == ["step-3", "step-4"]
    (tmp_path / "step-9").mkdir()  # a half-pruned or foreign folder: no marker, so not a checkpoint
    assert ckpt.latest_checkpoint(tmp_path).name == "step-4"
    assert ckpt.remove_partial(tmp_path) == [tmp_path / "step-9"]


def test_loading_restores_model_optimizer_scheduler_and_rng_exactly(tmp_path, accelerator):
    tiny = Tiny(accelerator)
    tiny.step()
    folder = tiny.save(accelerator, tmp_path, step=1)
    expected_draws = (random.random(), np.random.rand(), torch.rand(3))
    tiny.step()
    expected = {k: v.clone() for k, v in tiny.model.state_dict().items()}, tiny.scheduler.get_last_lr()
    other = Tiny(accelerator, seed=1)
    ckpt.load_training_states(accelerator, folder, other.model, other.optimizer, other.scheduler)
    assert ckpt.restore_rng_states(ckpt.rng_file(folder, 0))
    assert (random.random(), np.random.rand()) == expected_draws[:2] and torch.equal(torch.rand(3), expected_draws[2])
    other.step()  # the same random batch as `tiny` drew after its save
    assert all(torch.equal(v, other.model.state_dict()[k]) for k, v in expected[0].items())
    assert other.scheduler.get_last_lr() == expected[1]
    assert ckpt.read_state(folder).global_step == 1


# -- the data position --


def test_epoch_order_depends_only_on_seed_stage_and_epoch():
    plan = StagePlan(num_samples=40, batch_size=8, grad_accum=1, world_size=1, seed=0, stage_index=0, max_steps=12)
    assert plan.order(3) == StagePlan(40, 8, 1, 1, 0, 0).order(3)
    assert plan.order(0) != plan.order(1) and sorted(plan.order(1)) == list(range(40))
    assert plan.order(0) != StagePlan(40, 8, 1, 1, 0, stage_index=1).order(0)
    assert (plan.steps_per_epoch, plan.total_steps, plan.epochs_needed) == (5, 12, 3)


def test_processes_share_each_global_batch_like_one_big_batch():
    single = StagePlan(num_samples=40, batch_size=4, grad_accum=1, world_size=1, seed=0, stage_index=0, epochs=1)
    ddp = StagePlan(num_samples=40, batch_size=1, grad_accum=2, world_size=2, seed=0, stage_index=0, epochs=1)
    assert single.total_steps == ddp.total_steps == 10
    for step, window in enumerate(ddp.step_windows(epoch=0)):
        seen = [i for k in window for rank in (0, 1) for i in rank_share(ddp.micro_batches(0)[k], rank, 2)]
        assert sorted(seen) == sorted(single.micro_batches(0)[step])
    # 41 samples on 2 ranks of 4: the trailing batch of one sample cannot feed both ranks and is dropped.
    assert StagePlan(41, 4, 1, 2, 0, 0, epochs=1).micro_batches_per_epoch == 5
    assert StagePlan(42, 4, 1, 2, 0, 0, epochs=1).micro_batches_per_epoch == 6


# -- SIGKILL, then resume --


def resume_recipe(model: dict, data: Path, out: Path) -> dict:
    return {
        "model": model,
        "data": {"train": str(data), "max_length": 128},
        "stages": [
            {"name": "align", "max_steps": ALIGN_STEPS, "batch_size": 8, "lr": {"projectors": 3e-3}},
            {
                "name": "sft",
                "max_steps": SFT_STEPS,
                "batch_size": 8,
                "lr": {"projectors": 1e-3, "language_model": 1e-2},
                "lora": {"r": 4, "dropout": 0.1},
            },
        ],
        "output_dir": str(out),
        "checkpoints": {"every": 2, "keep": 2},
    }


def launch(recipe_path: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "omnifuse.training.trainer", str(recipe_path)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(log, "w"))  # noqa: SIM115


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def reference(tiny_model, bench, tmp_path_factory) -> Path:
    """An uninterrupted run of the resume recipe."""
    out = tmp_path_factory.mktemp("reference")
    with contextlib.redirect_stderr(io.StringIO()):
        train(validate_recipe(resume_recipe(tiny_model, bench, out)))
    return out


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(tiny_model, bench, reference, tmp_path):
    out = tmp_path / "killed"
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(json.dumps(resume_recipe(tiny_model, bench, out)))  # JSON is YAML
    first = launch(recipe_path, tmp_path / "first.log")
    wait_for(out / "checkpoints" / "step-2" / ckpt.COMPLETE, first)
    assert first.poll() is None
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()  # killed mid-run, before the final save
    second = launch(recipe_path, tmp_path / "second.log")
    assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    log = (tmp_path / "second.log").read_text()
    resumed_at = int(log.split("resuming from ")[1].split("step-")[1].split(" ")[0].rstrip(")"))
    assert 2 <= resumed_at < ALIGN_STEPS + SFT_STEPS
    expected, got = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    assert expected.keys() == got.keys()
    diff = max((expected[k] - got[k]).abs().max().item() for k in expected)
    print(f"SIGKILL at step >= 2, resumed from step-{resumed_at}: final weights max abs diff {diff:.3e}")
    assert diff <= 1e-6
    final = f"step-{ALIGN_STEPS + SFT_STEPS}"
    losses = [ckpt.read_state(d / "checkpoints" / final).history for d in (reference, out)]
    assert np.allclose([x for _, x in losses[0]], [x for _, x in losses[1]], atol=1e-6)


def test_rerunning_a_finished_run_trains_nothing_more(tiny_model, bench, reference):
    with contextlib.redirect_stderr(io.StringIO()):
        result = train(validate_recipe(resume_recipe(tiny_model, bench, reference)))
    assert result["steps"] == ALIGN_STEPS + SFT_STEPS


def test_resuming_with_other_stages_is_refused(tiny_model, bench, reference):
    changed = resume_recipe(tiny_model, bench, reference)
    changed["stages"][0]["max_steps"] = ALIGN_STEPS + 1
    with pytest.raises(RecipeError, match="output_dir: .* cannot be resumed; choose a new output_dir"):
        train(validate_recipe(changed))
