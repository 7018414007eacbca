"""Per-cell labels of image scenes: checked against the rendered pixels."""

import numpy as np
import pytest

from omnifuse.benchmark.common import COLORS, PALETTE, SHAPES, SynthConfig
from omnifuse.benchmark.dense import NO_OBJECT, cell_labels, labelled_scenes, random_scene
from omnifuse.benchmark.image import PlacedShape, render_scene


def test_square_filling_one_cell_labels_only_that_cell():
    colours, shapes = cell_labels([PlacedShape("square", "blue", 8, 16, 8)], image_size=32, grid=4)
    # raster order: cell (row 2, col 1) is index 9
    assert colours.tolist() == [0] * 9 + [1 + COLORS.index("blue")] + [0] * 6
    assert shapes[9] == 1 + SHAPES.index("square") and (np.delete(shapes, 9) == NO_OBJECT).all()


def test_a_cell_goes_to_the_object_covering_most_of_it():
    # the red square covers 6 columns of cell 0, the green one only 1 column of it
    items = [PlacedShape("square", "red", 0, 0, 6), PlacedShape("square", "green", 7, 0, 8)]
    colours, _ = cell_labels(items, image_size=32, grid=4)
    assert colours[0] == 1 + COLORS.index("red") and colours[1] == 1 + COLORS.index("green")


def test_labels_agree_with_rendered_pixels():
    rng = np.random.default_rng(3)
    for _ in range(20):
        shapes = random_scene(rng, SynthConfig())
        pixels = np.asarray(render_scene(shapes, 32)).reshape(4, 8, 4, 8, 3)
        colours, kinds = cell_labels(shapes, 32, 4)
        for index, (c, k) in enumerate(zip(colours, kinds)):
            cell = pixels[index // 4, :, index % 4].reshape(-1, 3)
            if c == NO_OBJECT:
                assert k == NO_OBJECT
                continue
            colour = COLORS[c - 1]
            assert (cell == PALETTE[colour]).all(-1).sum() >= 7  # >= 10% of the 64 pixels
            assert any(s.color == colour and s.shape == SHAPES[k - 1] for s in shapes)


def test_labelled_scenes_shapes_and_grid_mismatch():
    images, colours, kinds, centres = labelled_scenes(np.random.default_rng(0), 5, grid=4)
    assert len(images) == 5 and images[0].size == (32, 32)
    assert colours.shape == kinds.shape == (5, 16)
    assert ((colours == 0) == (kinds == 0)).all()
    assert centres.shape == (5, 16) and set(np.unique(centres)) <= {0, 1}
    assert (colours[centres == 1] != 0).all()  # a centre cell is covered by its object
    with pytest.raises(ValueError, match="not a multiple of the grid"):
        cell_labels([], image_size=32, grid=5)


def test_centre_labels_flag_each_object_once_whatever_it_covers():
    from omnifuse.benchmark.dense import centre_labels

    big = PlacedShape("square", "red", 2, 2, 12)  # covers cells (0,0), (0,1), (1,0), (1,1); centre (8, 8)
    small = PlacedShape("circle", "blue", 24, 24, 8)  # centre (28, 28): cell (3, 3)
    flags = centre_labels([big, small], image_size=32, grid=4)
    assert np.flatnonzero(flags).tolist() == [5, 15]
    scenes = [random_scene(np.random.default_rng(seed), SynthConfig()) for seed in range(20)]
    assert all(centre_labels(s, 32, 4).sum() == len(s) for s in scenes)  # shapes never share a centre cell


def test_frame_labels_mark_exactly_the_frames_where_the_clip_sounds():
    from omnifuse.benchmark.audio import PITCHES, build_louder, pitch_class
    from omnifuse.benchmark.dense import frame_labels

    record = build_louder(np.random.default_rng(5), SynthConfig())
    clip, tones = record.media[0][1][0], record.facts["tones"]
    pitch, loudness = frame_labels(tones, frames=50, window_seconds=1.0)
    energy = np.abs(clip).reshape(50, 320).max(1)  # 20 ms frames
    # a sounding frame centre lies inside a tone: its frame has signal; a silent frame far from any tone has none
    assert (energy[pitch != 0] > 0.05).all()
    assert set(pitch[pitch != 0].tolist()) == {1 + PITCHES.index(pitch_class(tones[0]["freq"]))}
    louder = 0 if tones[0]["amplitude"] > tones[1]["amplitude"] else 1
    first = pitch.nonzero()[0][0]
    assert (loudness[first] > np.nanmin(loudness)) == (louder == 0)
    assert np.isnan(loudness[pitch == 0]).all() and not np.isnan(loudness[pitch != 0]).any()
