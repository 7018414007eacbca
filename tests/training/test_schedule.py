"""The learning-rate schedule of a stage: warmup then cosine, or warmup-stable-decay."""

from __future__ import annotations

import math

import pytest
import torch

from omnifuse.training.recipe import RecipeError, validate_recipe
from omnifuse.training.schedule import make_scheduler


def factors(total: int, warmup_ratio: float, decay_ratio: float | None) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = make_scheduler(optimizer, total, warmup_ratio, decay_ratio)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_cosine_decays_over_every_step_after_the_warmup():
    lr = factors(100, 0.1, None)
    assert lr[5] == pytest.approx(0.5)  # linear warmup
    assert lr[10] == pytest.approx(1.0)
    assert lr[55] == pytest.approx(0.5)  # half-way through the 90 decay steps
    assert lr[99] < 0.01


def test_warmup_stable_decay_holds_the_peak_until_the_last_share():
    lr = factors(100, 0.1, 0.2)
    assert lr[5] == pytest.approx(0.5)
    assert lr[10:80] == pytest.approx([1.0] * 70)
    assert lr[90] == pytest.approx(0.5 * (1 + math.cos(math.pi * 10 / 20)))
    assert lr[99] < 0.01
    assert all(a >= b for a, b in zip(lr[80:], lr[81:]))


def recipe_with_stage(**stage) -> dict:
    return {
        "model": {"text": {"model_type": "llama"}},
        "data": {"train": "train.jsonl"},
        "stages": [{"name": "sft", "max_steps": 3, **stage}],
        "output_dir": "out",
    }


@pytest.mark.parametrize("bad", [0, 1.5, -0.1])
def test_a_decay_ratio_outside_zero_to_one_is_a_recipe_error(bad):
    with pytest.raises(RecipeError, match="stages.0.decay_ratio"):
        validate_recipe(recipe_with_stage(decay_ratio=bad), "r.yaml")


def test_warmup_and_decay_longer_than_the_stage_is_a_recipe_error():
    with pytest.raises(RecipeError, match="warmup_ratio \\+ decay_ratio is 1.1"):
        validate_recipe(recipe_with_stage(warmup_ratio=0.5, decay_ratio=0.6), "r.yaml")
