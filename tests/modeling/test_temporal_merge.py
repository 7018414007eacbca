"""Temporal merge of video frames: one unit of k consecutive frames, each token holding its cell in all k."""

import pytest
import torch
from PIL import Image

from omnifuse import OmniForConditionalGeneration
from omnifuse.benchmark.dataset import BenchmarkDataset
from omnifuse.config import ModalitySpec
from omnifuse.errors import ModalityError
from omnifuse.modeling.presets import tiny_conv_config, tiny_text_config
from omnifuse.modeling.projectors import merge_frames
from omnifuse.training.build import build_model
from omnifuse.training.recipe import ModelSection

MERGE = 2


@pytest.fixture(scope="module")
def merged():
    torch.manual_seed(0)
    section = ModelSection(
        text=tiny_text_config("llama").to_dict(),
        image=tiny_conv_config("resnet").to_dict(),
        video=True,
        projector={"image": "mlp", "video": {"type": "pixel_shuffle", "factor": 2}},
        modality_options={"video": {"temporal_merge": MERGE, "processing": {"num_frames": 3}}},
        tokenizer={"build": {"vocab_size": 300}},
    )
    model, processor = build_model(section, BenchmarkDataset(50, seed=0, modalities="video").corpus())
    return model.eval(), processor


def clip(colours):
    return [Image.new("RGB", (32, 32), colour) for colour in colours]


def video_batch(processor, frames):
    messages = [{"role": "user", "content": [{"type": "video", "video": frames}, {"type": "text", "text": "Which?"}]}]
    return processor.apply_chat_template([messages])


def test_merge_frames_puts_each_cell_of_consecutive_frames_side_by_side():
    frames = torch.arange(4 * 3 * 2, dtype=torch.float32).reshape(4, 3, 2)  # 4 frames, 3 cells, 2 channels
    merged = merge_frames(frames, 2)
    assert merged.shape == (2, 3, 4)
    assert torch.equal(merged[1, 2], torch.cat([frames[2, 2], frames[3, 2]]))
    assert merge_frames(frames, 1) is frames
    with pytest.raises(ValueError, match="3 frames cannot be merged in groups of 2"):
        merge_frames(frames[:3], 2)


def test_spec_checks_the_merge():
    with pytest.raises(ModalityError, match="temporal_merge must be an integer >= 1"):
        ModalitySpec(kind="video", shares_encoder_with="image", temporal_merge=0)
    with pytest.raises(ModalityError, match="temporal_merge merges video frames; a image modality has none"):
        ModalitySpec(kind="image", encoder=tiny_conv_config("resnet").to_dict(), temporal_merge=2)


def test_processor_pads_the_clip_and_marks_each_unit(merged):
    model, processor = merged
    spec = model.config.modality_specs()["video"]
    batch = video_batch(processor, clip(["red", "blue", "green"]))
    pixels = batch["pixel_values_videos"]
    assert pixels.shape[0] == 4  # 3 frames, the last repeated up to a multiple of 2
    assert torch.equal(pixels[3], pixels[2]) and not torch.equal(pixels[1], pixels[2])
    text = processor.tokenizer.decode(batch["input_ids"][0])
    assert text.count("s>") == 2  # one timestamp marker per unit of 2 frames
    per_unit = 4  # the 4x4 ResNet map, 2x2 cells merged
    assert int((batch["input_ids"] == spec.placeholder_token_id).sum()) == 2 * per_unit


def test_a_token_sees_every_frame_of_its_unit_and_no_other(merged):
    model, processor = merged
    base = video_batch(processor, clip(["red", "blue", "green", "white"]))["pixel_values_videos"]
    changed = base.clone()
    changed[1] = torch.randn_like(changed[1])  # second frame of unit 0
    with torch.no_grad():
        before, after = model.encode_media("video", base), model.encode_media("video", changed)
    assert before.shape == (2 * 4, model.config.text_config.hidden_size)
    assert not torch.allclose(before[:4], after[:4])
    assert torch.equal(before[4:], after[4:])


def test_merged_video_model_trains_and_round_trips(merged, tmp_path):
    model, processor = merged
    batch = video_batch(processor, clip(["red", "blue", "green", "white"]))
    with torch.no_grad():
        logits = model(**batch).logits
    model.save_pretrained(tmp_path)
    loaded = OmniForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.modality_specs()["video"].temporal_merge == MERGE
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, logits)


def test_cross_attention_video_takes_one_marker_per_unit():
    section = ModelSection(
        text=tiny_text_config("llama").to_dict(),
        image=tiny_conv_config("resnet").to_dict(),
        video=True,
        modality_options={"video": {"temporal_merge": MERGE, "fusion": "cross_attention"}},
        tokenizer={"build": {"vocab_size": 300}},
    )
    torch.manual_seed(0)
    model, processor = build_model(section, BenchmarkDataset(50, seed=0, modalities="video").corpus())
    with torch.no_grad():  # open the gates (Flamingo's start at zero: the LM is untouched at first)
        for name, parameter in model.cross_attention.named_parameters():
            if name.endswith("_gate"):
                parameter.fill_(0.7)
    batch = video_batch(processor, clip(["red", "blue", "green", "white"]))
    spec = model.config.modality_specs()["video"]
    assert int((batch["input_ids"] == spec.placeholder_token_id).sum()) == 2  # 4 frames, 2 units
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    changed = dict(batch, pixel_values_videos=batch["pixel_values_videos"].flip(0))
    with torch.no_grad():
        assert not torch.allclose(model(**changed).logits, logits)  # the frames reach the LM
