"""Vision-encoder warm-up on per-cell labels: it trains the encoder only, and the cells become readable."""

import pytest
import torch

from omnifuse.benchmark.generate import generate_records, to_messages
from omnifuse.data.formats import Record
from omnifuse.demo.recipe import demo_model
from omnifuse.demo.warmup import cell_grid, warm_up_audio_encoder, warm_up_vision_encoder
from omnifuse.training.build import build_model
from omnifuse.training.recipe import ModelSection


@pytest.fixture(scope="module")
def image_model():
    torch.manual_seed(0)
    config = demo_model()
    config.pop("video")
    config["projector"] = {name: config["projector"][name] for name in ("image", "audio")}
    config["modality_options"] = {}
    records = [Record(to_messages(r), f"r{i}") for i, r in enumerate(generate_records(20, 0, "image,audio"))]
    return build_model(ModelSection(**config), records)


def test_warm_up_trains_the_encoder_only_and_cells_become_readable(image_model):
    model, processor = image_model
    lm_before = {k: v.clone() for k, v in model.language_model.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in model.encoder_for("image").state_dict().items()}
    stats = warm_up_vision_encoder(model, processor, steps=60, batch_size=16, seed=0, log_every=0)
    assert stats["steps"] == 60 and stats["seconds"] > 0
    # both labels right on covered cells: chance is 1/24 (0.04); 60 steps of 16 scenes reach ~0.3 (the row,
    # column and centre heads share the encoder: 30 steps reached 0.3 before they were added, 0.13 after)
    assert stats["cell_accuracy"] >= 0.15
    assert all(torch.equal(v, model.language_model.state_dict()[k]) for k, v in lm_before.items())
    after = model.encoder_for("image").state_dict()
    assert any(not torch.equal(v, after[k]) for k, v in encoder_before.items())


def test_audio_warm_up_trains_the_audio_encoder_only_and_frames_become_readable(image_model):
    model, processor = image_model
    vision_before = {k: v.clone() for k, v in model.encoder_for("image").state_dict().items()}
    stats = warm_up_audio_encoder(model, processor, steps=30, batch_size=16, seed=0, log_every=0)
    # pitch class (or silence) right on every encoder frame; about half the frames are silent
    assert stats["steps"] == 30 and stats["frame_accuracy"] >= 0.7
    assert all(torch.equal(v, model.encoder_for("image").state_dict()[k]) for k, v in vision_before.items())


def test_cell_grid_needs_a_square_map():
    assert cell_grid(16) == 4
    with pytest.raises(ValueError, match="square feature map"):
        cell_grid(12)


def test_warm_start_saves_the_warmed_model_and_points_the_recipe_at_it(tmp_path):
    from omnifuse.demo.pipeline import warm_start
    from omnifuse.demo.recipe import demo_recipe
    from omnifuse.modeling.folder import load_omni_folder

    recipe = demo_recipe(tmp_path / "model", seed=0, minutes=0.1, modalities="image,audio")
    stats = warm_start(recipe, tmp_path / "warm", seed=0, modalities="image,audio", steps=(3, 2))
    assert stats["vision"]["steps"] == 3 and stats["audio"]["steps"] == 2
    assert recipe["model"] == {"from_pretrained": str(tmp_path / "warm")}
    model, processor = load_omni_folder(tmp_path / "warm")
    assert "image" in processor.specs and model.encoder_for("image") is not None

    untouched = demo_recipe(tmp_path / "model", seed=0, minutes=0.1, modalities="text")
    assert warm_start(untouched, tmp_path / "none", seed=0, modalities="text") == {}
    assert "text" in untouched["model"] and not (tmp_path / "none").exists()


def test_position_loss_targets_each_cells_own_row_and_column():
    from omnifuse.demo.warmup import CellHeads

    heads = CellHeads(hidden=16, grid=4)
    features = torch.eye(16).expand(3, -1, -1) * 50  # cell k's feature is one-hot k
    with torch.no_grad():
        cells = torch.arange(16)
        heads.row.weight.copy_(torch.nn.functional.one_hot(cells // 4, 4).T.float())
        heads.column.weight.copy_(torch.nn.functional.one_hot(cells % 4, 4).T.float())
        heads.row.bias.zero_(), heads.column.bias.zero_()
    assert heads.position_loss(features).item() < 1e-6  # raster order: row = k // 4, column = k % 4
    with torch.no_grad():
        heads.row.weight.copy_(heads.row.weight.roll(1, 0))  # rows predicted one off
    assert heads.position_loss(features).item() > 10
