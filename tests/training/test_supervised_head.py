"""training/supervised_head.py: the head on supervised positions gives the full loss and gradients."""

import pytest
import torch
from torch import nn

from omnifuse.bench.train import TrainOptions, encode_batches, primed_collator
from omnifuse.bench.workload import build_workload
from omnifuse.processing.chat import IGNORE_INDEX
from omnifuse.training.supervised_head import supervised_loss_sum


@pytest.fixture(scope="module")
def setup():
    work = build_workload("tiny", seed=1)
    return work, encode_batches(work, TrainOptions(size="tiny", steps=1, batch_size=6))


def _loss_and_grads(model, loss_fn):
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("packing", [True, False])
def test_same_loss_and_gradients_as_the_full_logits(setup, packing: bool) -> None:
    work, batches = setup
    kwargs = {"packing": True, "pack_length": 256} if packing else {}
    batch = primed_collator(work, batches, **kwargs)(batches[0])
    supervised = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    full, full_grads = _loss_and_grads(work.model, lambda: work.model(**batch).loss)
    sparse, sparse_grads = _loss_and_grads(work.model, lambda: supervised_loss_sum(work.model, batch) / supervised)
    assert abs(full.item() - sparse.item()) <= 1e-5
    assert full_grads.keys() == sparse_grads.keys()
    for name, grad in full_grads.items():
        assert torch.allclose(grad, sparse_grads[name], atol=1e-6), name


def test_wrapped_models_and_rescaled_heads_fall_back(setup) -> None:
    work, batches = setup
    batch = primed_collator(work, batches)(batches[0])
    wrapper = nn.Sequential(work.model)
    assert supervised_loss_sum(wrapper, batch) is None
    work.model.language_model.config.final_logit_softcapping = 30.0
    try:
        assert supervised_loss_sum(work.model, batch) is None
    finally:
        work.model.language_model.config.final_logit_softcapping = None
