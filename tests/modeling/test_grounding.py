"""modeling/grounding.py: the grounding head's settings, targets, loss, and its life inside the model."""

import pytest
import torch
import torch.nn.functional as F

from omnifuse import OmniForConditionalGeneration
from omnifuse.modeling.grounding import GroundingHead, GroundingSettings, grounding_loss_sum, grounding_targets
from omnifuse.modeling.presets import tiny_text_config, tiny_vision_config
from omnifuse.processing.grounding import GROUNDING_KEY

SETTINGS = {"layer": 1, "bins": 4, "weight": 0.5}


def build(grounding=SETTINGS):
    torch.manual_seed(0)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=64), image=tiny_vision_config("siglip_vision_model")
    )
    if grounding:
        model.enable_grounding(grounding)
    return model


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"layer": 9}, "grounding.layer must be an integer in"),
        ({"bins": 1}, "grounding.bins must be an integer >= 2"),
        ({"weight": 0}, "grounding.weight must be a positive number"),
        ({"lyer": 1}, "unknown field"),
    ],
)
def test_bad_settings_are_named(raw, message):
    with pytest.raises(ValueError, match=message):
        GroundingSettings.from_dict(raw, num_layers=2)


def test_targets_are_column_and_row_bins_of_grounded_tokens():
    xy = torch.full((2, 5, 2), -1.0)
    xy[0, 1] = torch.tensor([0.0, 0.99])
    xy[1, 3] = torch.tensor([1.0, 0.3])  # x = 1.0 is the right edge: the last bin
    bins, where = grounding_targets(xy, bins=4)
    assert bins.tolist() == [[0, 3], [3, 1]]
    assert where.tolist() == [[0, 1], [1, 3]]


def test_loss_is_weighted_cross_entropy_of_both_axes_at_the_chosen_layer():
    settings = GroundingSettings(layer=1, bins=4, weight=0.5)
    head = GroundingHead(settings, hidden=8)
    states = (torch.randn(1, 3, 8), torch.randn(1, 3, 8))
    xy = torch.full((1, 3, 2), -1.0)
    xy[0, 2] = torch.tensor([0.6, 0.1])
    logits = head.linear(states[1][0, 2]).view(2, 4)
    expected = 0.5 * (F.cross_entropy(logits[:1], torch.tensor([2])) + F.cross_entropy(logits[1:], torch.tensor([0])))
    assert torch.allclose(grounding_loss_sum(head, settings, states, xy), expected)
    nothing = grounding_loss_sum(head, settings, states, torch.full((1, 3, 2), -1.0))
    assert nothing.item() == 0.0


def test_head_saves_loads_and_is_ignored_by_forward(tmp_path):
    model = build()
    assert "grounding_head" in model.part_modules()
    model.save_pretrained(tmp_path)
    loaded = OmniForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config.grounding == SETTINGS
    assert torch.equal(loaded.grounding_head.linear.weight, model.grounding_head.linear.weight)
    ids = torch.tensor([[1, 5, 6, 7]])
    plain = loaded(input_ids=ids).logits
    with_targets = loaded(input_ids=ids, **{GROUNDING_KEY: torch.full((1, 4, 2), -1.0)}).logits
    assert torch.equal(plain, with_targets)


def test_enable_grounding_keeps_a_head_with_the_same_settings():
    model = build()
    head = model.grounding_head
    model.enable_grounding(dict(SETTINGS))
    assert model.grounding_head is head
    model.enable_grounding({**SETTINGS, "bins": 8})
    assert model.grounding_head is not head and model.grounding_head.linear.out_features == 16
    assert build(grounding=None).grounding_head is None
