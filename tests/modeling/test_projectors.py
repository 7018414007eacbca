import pytest
import torch

from omnifuse.modeling.projectors import (
    PROJECTORS,
    build_projector,
    lengths_mask,
    merge_neighbours,
    projector_output_length,
)

SPECS = [
    ({"type": "linear"}, "sequence", 16, 16),
    ({"type": "mlp"}, "grid", 16, 16),
    ({"type": "pixel_shuffle", "factor": 2}, "grid", 16, 4),
    ({"type": "pixel_shuffle", "factor": 3}, "sequence", 10, 4),
    ({"type": "perceiver", "num_latents": 5}, "sequence", 16, 5),
    ({"type": "qformer", "num_queries": 6}, "grid", 16, 6),
]


def test_registry_has_every_projector():
    assert set(PROJECTORS) == {"linear", "mlp", "pixel_shuffle", "perceiver", "qformer"}


@pytest.mark.parametrize("spec,layout,n_in,n_out", SPECS)
def test_output_shape_and_count_agree(spec, layout, n_in, n_out):
    proj = build_projector(spec, in_dim=12, out_dim=8, layout=layout)
    out = proj(torch.randn(3, n_in, 12), torch.full((3,), n_in))
    assert out.shape == (3, n_out, 8)
    assert proj.output_length(n_in) == n_out == projector_output_length(spec, n_in, layout)


def test_merge_neighbours_takes_row_major_blocks():
    # a 4x4 grid whose token value is its index 0..15
    grid = torch.arange(16.0).reshape(1, 16, 1)
    merged = merge_neighbours(grid, 2, "grid")
    assert merged.shape == (1, 4, 4)
    assert merged[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_merge_neighbours_pads_sequences():
    seq = torch.arange(1.0, 6.0).reshape(1, 5, 1)
    assert merge_neighbours(seq, 2, "sequence")[0].tolist() == [[1, 2], [3, 4], [5, 0]]


def test_pixel_shuffle_rejects_non_square_grid():
    proj = build_projector({"type": "pixel_shuffle", "factor": 2}, 4, 4, layout="grid")
    with pytest.raises(ValueError, match="square grid"):
        proj(torch.randn(1, 17, 4), torch.tensor([17]))


@pytest.mark.parametrize("name", ["perceiver", "qformer"])
def test_learned_queries_ignore_padding(name):
    torch.manual_seed(0)
    proj = build_projector({"type": name}, in_dim=8, out_dim=8).eval()
    features = torch.randn(1, 10, 8)
    lengths = torch.tensor([6])
    changed = features.clone()
    changed[:, 6:] = 100.0  # padding content must not matter
    assert torch.allclose(proj(features, lengths), proj(changed, lengths), atol=1e-6)
    assert not torch.allclose(proj(features, lengths), proj(features, torch.tensor([10])), atol=1e-4)


def test_unknown_projector_lists_choices():
    with pytest.raises(ValueError, match="available: .*mlp"):
        build_projector({"type": "nope"}, 4, 4)
    with pytest.raises(ValueError, match="bad parameters"):
        build_projector({"type": "mlp", "depth_typo": 3}, 4, 4)


def test_lengths_mask():
    assert lengths_mask(torch.tensor([1, 3]), 3).tolist() == [[True, False, False], [True, True, True]]


def test_norm_option_normalizes_features_first():
    torch.manual_seed(0)
    spec = {"type": "mlp", "norm": True}
    proj = build_projector(spec, in_dim=6, out_dim=4)
    features = torch.randn(1, 3, 6)
    shifted = features * 50 + 1000  # a large offset and scale, as raw hidden states can have
    lengths = torch.tensor([3])
    assert torch.allclose(proj(features, lengths), proj(shifted, lengths), atol=1e-3)
    assert proj.output_length(3) == projector_output_length(spec, 3, "sequence") == 3
