"""A four-modality model (image, depth, audio, imu) from a messages JSONL, through `omnifuse train` and `chat`.

Nothing here is known to the library: "depth" is a second image-kind modality with its own encoder,
"imu" a sequence-kind sensor stream. Config alone makes them work end to end.
"""

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from omnifuse.cli import main
from omnifuse.modeling.folder import load_omni_folder
from omnifuse.training.checkpoint import complete_checkpoints

SMALL_VIT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
             "image_size": 32, "patch_size": 8}  # fmt: skip
WHISPER = {"model_type": "whisper", "d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 4,
           "encoder_ffn_dim": 64, "decoder_layers": 1, "decoder_attention_heads": 4, "decoder_ffn_dim": 64,
           "vocab_size": 64, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
           "decoder_start_token_id": 1}  # fmt: skip
MODEL = {
    "text": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512},
    "image": {"model_type": "siglip_vision_model", **SMALL_VIT},
    "audio": {**WHISPER, "num_mel_bins": 80, "max_source_positions": 50},
    "modalities": {
        "depth": {"kind": "image", "encoder": {"model_type": "dinov2", **SMALL_VIT}},
        "imu": {"kind": "sequence", "encoder": {**WHISPER, "num_mel_bins": 6, "max_source_positions": 16},
                "projector": "linear", "processing": {"std": 2.0}},
    },
    "tokenizer": {"build": {"vocab_size": 300}},
}  # fmt: skip
ANSWERS = ("box", "ball", "cone")


def write_wav(path: Path, seconds: float, frequency: float) -> None:
    samples = (0.3 * np.sin(2 * np.pi * frequency * np.arange(int(16000 * seconds)) / 16000) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())


def write_dataset(folder: Path, n: int = 12) -> Path:
    """Records mixing every modality; imu streams alternate .npy and .csv files."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        Image.new("RGB", (32, 32), (40 * (i % 6), 90, 200)).save(folder / f"rgb{i}.png")
        Image.new("L", (32, 32), 20 * (i % 12)).save(folder / f"depth{i}.png")
        write_wav(folder / f"clip{i}.wav", 0.4, 300 + 100 * (i % 4))
        imu = rng.normal(size=(20 + 5 * i, 6))
        imu_name = f"imu{i}.npy" if i % 2 else f"imu{i}.csv"
        if i % 2:
            np.save(folder / imu_name, imu)
        else:
            (folder / imu_name).write_text("ax,ay,az,gx,gy,gz\n" + "\n".join(",".join(map(str, r)) for r in imu))
        parts = [
            {"type": "image", "path": f"rgb{i}.png"},
            {"type": "depth", "path": f"depth{i}.png"},
            {"type": "imu", "path": imu_name},
            {"type": "audio", "path": f"clip{i}.wav"},
            {"type": "text", "text": "what is it?"},
        ]
        answer = ANSWERS[i % 3]
        lines.append({"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": answer}]})
    path = folder / "data.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """align (projectors + the depth encoder, named in the recipe) then full, through `omnifuse train`."""
    root = tmp_path_factory.mktemp("named")
    data = write_dataset(root)
    recipe = {
        "model": MODEL,
        "data": {"train": str(data), "max_length": 400},
        "stages": [
            {"name": "align", "max_steps": 2, "batch_size": 4, "train": ["encoders.depth"], "lr": {"encoders": 1e-2}},
            {"name": "full", "max_steps": 2, "batch_size": 4},
        ],
        "output_dir": str(root / "out"),
        "checkpoints": {"every": 1, "keep": 5},
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 0
    return root, Path(recipe["output_dir"])


def test_train_writes_a_model_with_every_named_modality(trained):
    _, out = trained
    model, processor = load_omni_folder(out)
    assert sorted(model.encoders) == ["audio", "depth", "image", "imu"]
    assert sorted(processor.specs) == ["audio", "depth", "image", "imu"]
    assert model.config.modality_specs()["imu"].processing == {"std": 2.0}


def test_align_stage_trained_exactly_the_parts_its_recipe_names(trained):
    _, out = trained
    checkpoints = complete_checkpoints(out / "checkpoints")
    before = load_file(checkpoints[0] / "model.safetensors")  # after align step 1
    after = load_file(checkpoints[1] / "model.safetensors")  # after align step 2
    changed = {".".join(key.split(".")[:2]) for key in before if not torch.equal(before[key], after[key])}
    assert changed == {"encoders.depth", "projectors.image", "projectors.depth", "projectors.audio", "projectors.imu"}


def test_saved_model_reloads_with_identical_logits(trained, tmp_path):
    root, out = trained
    model, processor = load_omni_folder(out)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, processor_again = load_omni_folder(tmp_path)
    record = json.loads((root / "data.jsonl").read_text().splitlines()[3])["messages"][:1]
    for part in record[0]["content"]:
        if "path" in part:
            part["path"] = str(root / part["path"])
    inputs = processor.apply_chat_template(record, add_generation_prompt=True)
    media_keys = sorted(k for k in inputs if k not in ("input_ids", "attention_mask"))
    assert media_keys == ["depth_values", "imu_values", "imu_values_mask", "input_features", "input_features_mask",
                          "pixel_values"]  # fmt: skip
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, again(**processor_again.apply_chat_template(record, True)).logits)


def test_chat_takes_any_modality_by_name_and_answers_like_generate(trained, capsys):
    root, out = trained
    model, processor = load_omni_folder(out)
    media = {"image": root / "rgb2.png", "depth": root / "depth2.png", "imu": root / "imu3.npy"}
    args = ["chat", "--model", str(out), "--image", str(media["image"]), "--max-new-tokens", "4"]
    args += ["--media", f"depth={media['depth']}", "--media", f"imu={media['imu']}", "what is it?"]
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out.strip()
    parts = [{"type": name, "path": str(path)} for name, path in media.items()]
    messages = [{"role": "user", "content": [*parts, {"type": "text", "text": "what is it?"}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True)
    expected = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert printed == processor.decode(expected[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert main(["chat", "--model", str(out), "--media", f"lidar={media['imu']}", "hi"]) == 2
    assert "no 'lidar' modality" in capsys.readouterr().err
    assert main(["chat", "--model", str(out), "--media", "depth", "hi"]) == 2
