"""modeling/grounding.py: the grounding head's settings, targets, loss, and its life inside the model."""

import pytest
import torch
import torch.nn.functional as F

from omnifuse import OmniForConditionalGeneration
from omnifuse.modeling.grounding import (
    GroundingHead,
    GroundingSettings,
    attention_loss_sum,
    grounding_loss_sum,
    grounding_targets,
    looked_at_tokens,
    lookup_hits,
)
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
        ({"attend_layer": 2}, r"grounding.attend_layer must be an integer in \[0, 1\]"),
        ({"attend_layer": "0"}, "grounding.attend_layer must be an integer"),
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
    assert loaded.config.grounding == {**SETTINGS, "attend_layer": None}
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


IMG = 9  # the image placeholder id in the hand-made rows below


def test_looked_at_token_is_the_cell_of_the_centre_in_the_last_image_before():
    # row 0: a 2 x 2 image at 1-4, then a 3 x 3 image at 6-14, then the grounded words at 16 and 17
    ids = torch.tensor([[0, *[IMG] * 4, 5, *[IMG] * 9, 5, 7, 8]])
    xy = torch.full((1, 18, 2), -1.0)
    xy[0, 16] = torch.tensor([0.9, 0.1])  # column 2, row 0 of the 3 x 3 grid
    xy[0, 17] = torch.tensor([0.5, 1.0])  # column 1, row 2 (the bottom edge is the last row)
    assert looked_at_tokens(ids, IMG, xy).tolist() == [6 + 2, 6 + 2 * 3 + 1]


@pytest.mark.parametrize(
    ("ids", "message"),
    [([5, 5, 7, 8], "follows no image tokens"), ([IMG, IMG, IMG, 7, 8], "has 3 tokens, not a square grid")],
)
def test_a_grounded_word_without_a_grid_of_image_tokens_is_named(ids, message):
    xy = torch.full((1, len(ids), 2), -1.0)
    xy[0, -1] = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match=message):
        looked_at_tokens(torch.tensor([ids]), IMG, xy)


def test_attention_loss_is_weighted_negative_log_of_the_first_heads_weight_on_the_cell():
    ids = torch.tensor([[IMG] * 4 + [7, 8]])
    xy = torch.full((1, 6, 2), -1.0)
    xy[0, 5] = torch.tensor([0.1, 0.9])  # column 0, row 1: the image token at position 2
    attentions = tuple(torch.softmax(torch.randn(1, 2, 6, 6), -1) for _ in range(2))
    settings = GroundingSettings(weight=0.5, attend_layer=1)
    expected = -0.5 * attentions[1][0, 0, 5, 2].log()
    assert torch.allclose(attention_loss_sum(settings, attentions, ids, IMG, xy), expected)


def test_lookup_hits_count_words_whose_first_head_looks_hardest_at_the_cell():
    ids = torch.tensor([[IMG] * 4 + [7, 8]])
    xy = torch.full((1, 6, 2), -1.0)
    xy[0, 4] = torch.tensor([0.9, 0.1])  # column 1, row 0: position 1
    xy[0, 5] = torch.tensor([0.1, 0.9])  # column 0, row 1: position 2
    attention = torch.zeros(1, 2, 6, 6)
    attention[0, 0, 4, 1] = 1.0  # right
    attention[0, 0, 5, 3] = 1.0  # wrong cell
    attention[0, 1, 5, 2] = 1.0  # the right cell, but not the first head
    assert lookup_hits(GroundingSettings(attend_layer=0), (attention,), ids, IMG, xy) == 1


def test_attend_layer_runs_eager_attention_and_survives_save_and_load(tmp_path):
    model = build({**SETTINGS, "attend_layer": 0})
    assert model.language_model.config._attn_implementation == "eager"  # the kind that returns weights
    model.save_pretrained(tmp_path)
    loaded = OmniForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.grounding_settings.attend_layer == 0
    assert loaded(input_ids=torch.tensor([[1, 5, 6]]), output_attentions=True).attentions[0].shape == (1, 4, 3, 3)


def test_attend_layer_needs_an_image_modality():
    model = OmniForConditionalGeneration.from_components(text=tiny_text_config("llama", vocab_size=64))
    with pytest.raises(ValueError, match="no image modality"):
        model.enable_grounding({**SETTINGS, "attend_layer": 0})
