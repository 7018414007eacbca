import json

import pytest

from omnifuse.errors import FolderError
from omnifuse.processing.media import MediaLimits
from omnifuse.safety.model_files import check_model_folder_files, media_limits_from_json, positions_in_folder


def test_limits_within_their_ceilings_load():
    assert media_limits_from_json(None, "p.json") == MediaLimits()
    limits = media_limits_from_json({"max_pixels": 1000, "max_text_chars": 50, "max_audio_seconds": 1.5}, "p.json")
    assert (limits.max_pixels, limits.max_text_chars, limits.max_audio_seconds) == (1000, 50, 1.5)


def test_positions_in_folder(tmp_path):
    assert positions_in_folder(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"max_position_embeddings": 4096}}))
    assert positions_in_folder(tmp_path) == 4096
    (tmp_path / "config.json").write_text("{broken")
    assert positions_in_folder(tmp_path) is None


def test_model_folder_files(tmp_path):
    with pytest.raises(FolderError, match="no such folder"):
        check_model_folder_files(tmp_path / "nope")
    for name in ("config.json", "model.safetensors", "omnifuse_processor.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    check_model_folder_files(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(FolderError, match="missing a tokenizer"):
        check_model_folder_files(tmp_path)
    check_model_folder_files(tmp_path, need_processor=False)  # a processor passed in brings its tokenizer
