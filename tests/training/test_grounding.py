"""The grounding head in training: its loss term, its gradients, a recipe run that trains and saves it."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from torch import nn

from omnifuse import OmniForConditionalGeneration
from omnifuse.data.collator import MultimodalCollator
from omnifuse.data.sources import MessagesDataset
from omnifuse.modeling.grounding import attention_loss_sum, grounding_loss_sum
from omnifuse.processing.grounding import GROUNDING_KEY
from omnifuse.training.build import build_model, load_datasets
from omnifuse.training.loop import token_loss_sum
from omnifuse.training.recipe import DataSection, ModelSection, RecipeError, validate_recipe
from omnifuse.training.trainer import train

GROUNDING = {"layer": 1, "bins": 4, "weight": 1.0}


@pytest.fixture(scope="module")
def grounded(tiny_model, bench):
    """A tiny model with a grounding head and one batch of benchmark records (image questions ground words)."""
    torch.manual_seed(0)
    records = load_datasets(DataSection(train=str(bench)))[0]
    model, processor = build_model(ModelSection(**tiny_model, grounding=GROUNDING), records.corpus())
    batch = MultimodalCollator(processor)([records[i] for i in range(len(records))])
    assert int((batch[GROUNDING_KEY][..., 0] >= 0).sum()) > 0, "the benchmark grounds some words"
    return model, batch


def expected_loss(model, batch):
    inputs = {k: v for k, v in batch.items() if k not in ("labels", GROUNDING_KEY)}
    out = model(**inputs, output_hidden_states=True)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    tokens = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    settings = model.grounding_settings
    return tokens, grounding_loss_sum(model.grounding_head, settings, out.hidden_states, batch[GROUNDING_KEY])


@pytest.mark.parametrize("wrapped", [False, True], ids=["supervised-head path", "full-logits path"])
def test_loss_is_token_loss_plus_grounding_loss(grounded, wrapped):
    model, batch = grounded
    tokens, grounding = expected_loss(model, batch)
    runner = _Wrapper(model) if wrapped else model  # a wrapper takes the full-logits path
    loss = token_loss_sum(runner, batch, torch.device("cpu"))
    assert grounding.item() > 0
    assert torch.allclose(loss, tokens + grounding, rtol=1e-5)


@pytest.mark.parametrize("wrapped", [False, True], ids=["supervised-head path", "full-logits path"])
def test_attend_layer_adds_the_attention_loss_and_trains_the_lookup(tiny_model, bench, wrapped):
    torch.manual_seed(0)
    records = load_datasets(DataSection(train=str(bench)))[0]
    section = ModelSection(**tiny_model, grounding={**GROUNDING, "attend_layer": 0})
    model, processor = build_model(section, records.corpus())
    batch = MultimodalCollator(processor)([records[i] for i in range(len(records))])
    tokens, grounding = expected_loss(model, batch)
    inputs = {k: v for k, v in batch.items() if k not in ("labels", GROUNDING_KEY)}
    attentions = model(**inputs, output_attentions=True).attentions
    settings = model.grounding_settings
    looking = attention_loss_sum(
        settings, attentions, batch["input_ids"], model.image_placeholder_id(), batch[GROUNDING_KEY]
    )
    assert looking.item() > 0
    loss = token_loss_sum(_Wrapper(model) if wrapped else model, batch, torch.device("cpu"))
    assert torch.allclose(loss, tokens + grounding + looking, rtol=1e-5)
    layers = model.language_model.model.layers
    weights = [layers[0].self_attn.q_proj.weight, layers[1].self_attn.q_proj.weight]
    first, second = torch.autograd.grad(looking, weights, allow_unused=True)
    assert first.abs().sum() > 0 and second is None  # it trains the lookup of the layer it names, nothing above


class _Wrapper(nn.Module):
    """Like DDP: the model under `.module`, called through the wrapper."""

    def __init__(self, model):
        super().__init__()
        self.module = model

    def forward(self, **kwargs):
        return self.module(**kwargs)


def test_a_batch_without_regions_gives_the_head_zero_gradients(grounded):
    model, batch = grounded
    plain = {k: v for k, v in batch.items() if k != GROUNDING_KEY}
    model.zero_grad()
    token_loss_sum(model, plain, torch.device("cpu")).backward()
    grads = [p.grad for p in model.grounding_head.parameters()]
    assert all(g is not None and not g.any() for g in grads)  # present (DDP needs them), and zero


@pytest.mark.parametrize(
    ("lora", "attend_layer"), [(None, None), ({"r": 4}, 0)], ids=["full LM", "LoRA, supervised lookup"]
)
def test_recipe_trains_and_saves_the_head(tiny_model, bench, tmp_path, lora, attend_layer):
    stage = {"name": "sft", "max_steps": 3, "batch_size": 8, "lr": {"language_model": 1e-2}, "eval_every": 3}
    grounding = {**GROUNDING, "attend_layer": attend_layer}
    recipe = validate_recipe(
        {
            "model": {**tiny_model, "grounding": grounding},
            "data": {"train": str(bench), "eval": str(bench), "max_length": 128},
            "stages": [{**stage, "lora": lora} if lora else stage],
            "output_dir": str(tmp_path / "run"),
        }
    )
    torch.manual_seed(0)
    before = build_model(recipe.model, load_datasets(recipe.data)[0].corpus())[0].grounding_head.linear.weight
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        train(recipe)
    assert "grounding_head" in stderr.getvalue()  # the stage's trainable-parts line names it
    saved = OmniForConditionalGeneration.from_pretrained(tmp_path / "run")
    assert saved.config.grounding == grounding
    assert not torch.equal(saved.grounding_head.linear.weight, before)


def test_bad_grounding_settings_are_a_recipe_error(tiny_model, bench):
    records = MessagesDataset.from_path(bench)
    with pytest.raises(RecipeError, match="grounding.bins") as err:
        build_model(ModelSection(**tiny_model, grounding={"bins": 1}), list(records.corpus()))
    assert err.value.path == "model.grounding"
