"""The content-part grammar: a part type names a modality in one of three spellings."""

import base64

import numpy as np
import pytest

from omnifuse.processing.parts import part_modality, part_source, source_problem


@pytest.mark.parametrize(
    ("part_type", "modality"),
    [("image", "image"), ("image_url", "image"), ("video_url", "video"), ("input_audio", "audio"),
     ("depth", "depth"), ("depth_url", "depth"), ("input_imu", "imu"), ("text", None), ("Bad Type", None),
     (3, None), ("input_", None)],
)  # fmt: skip
def test_part_modality(part_type, modality):
    assert part_modality(part_type) == modality


def test_sources_in_every_spelling():
    array = np.zeros((4, 2))
    assert part_source({"type": "depth", "path": "d.png"}) == "d.png"
    assert part_source({"type": "depth_url", "depth_url": {"url": "data:x"}}) == "data:x"
    assert part_source({"type": "image_url", "image_url": "data:y"}) == "data:y"
    data = base64.b64encode(b"RIFF").decode()
    assert part_source({"type": "input_imu", "input_imu": {"data": data, "format": "npy"}}) == b"RIFF"
    assert part_source({"type": "imu", "array": array}) is array
    source = part_source({"type": "audio", "audio": array, "sampling_rate": 8000})
    assert source[0] is array and source[1] == 8000
    # an empty path does not hide a url after it
    assert part_source({"type": "image", "path": "", "url": "data:z"}) == "data:z"


@pytest.mark.parametrize(
    ("part", "reason"),
    [
        ({"type": "depth"}, "depth part has no source (needs 'path', 'url' or 'depth')"),
        ({"type": "depth_url", "depth_url": {}}, "needs 'depth_url': {'url': ...}"),
        ({"type": "input_audio", "input_audio": {"format": "wav"}}, "needs 'input_audio': {'data': BASE64"),
    ],
)
def test_missing_sources_are_named(part, reason):
    assert reason in source_problem(part)
    with pytest.raises(ValueError, match="has no source"):
        part_source(part)


def test_bad_base64_is_a_value_error():
    with pytest.raises(ValueError, match="base64"):
        part_source({"type": "input_audio", "input_audio": {"data": "%%%not base64", "format": "wav"}})
