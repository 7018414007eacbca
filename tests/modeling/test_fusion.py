import pytest
import torch

from omnifuse.modeling.fusion import scatter_features


def test_features_land_exactly_at_placeholders_in_order():
    embeds = torch.zeros(2, 5, 3)
    mask = torch.tensor([[False, True, True, False, False], [False, False, False, True, False]])
    features = torch.tensor([[1.0, 1, 1], [2, 2, 2], [3, 3, 3]])
    out = scatter_features(embeds, mask, features, "image")
    assert out[0, 1].tolist() == [1, 1, 1]
    assert out[0, 2].tolist() == [2, 2, 2]
    assert out[1, 3].tolist() == [3, 3, 3]
    assert out[~mask].abs().sum() == 0  # everything else untouched


def test_count_mismatch_names_modality_and_both_counts():
    mask = torch.tensor([[True, True, False]])
    with pytest.raises(ValueError, match=r"audio: 2 placeholder tokens in input_ids but 3 feature vectors"):
        scatter_features(torch.zeros(1, 3, 4), mask, torch.ones(3, 4), "audio")
