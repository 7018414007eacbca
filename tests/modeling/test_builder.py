"""`from_components` on local folders written by transformers' save_pretrained: the weights arrive intact."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoTokenizer,
    CLIPConfig,
    CLIPModel,
    CLIPVisionModel,
    LlamaForCausalLM,
    WhisperForConditionalGeneration,
    WhisperModel,
)

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer

LM_VOCAB = 64  # smaller than the tokenizer, so loading must also grow the embeddings


def tiny_clip() -> CLIPModel:
    text = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64}
    vision = tiny_vision_config("clip_vision_model").to_dict()
    return CLIPModel(CLIPConfig(text_config=text | {"vocab_size": 99}, vision_config=vision, projection_dim=16))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Each component saved by transformers into its own folder, with the module it should load as."""
    root = tmp_path_factory.mktemp("components")
    torch.manual_seed(0)
    clip = tiny_clip()
    whisper = WhisperModel(tiny_audio_config("whisper"))
    whisper_asr = WhisperForConditionalGeneration(tiny_audio_config("whisper"))
    parts = {
        "clip_vision": (CLIPVisionModel(tiny_vision_config("clip_vision_model")), None),
        "clip_full": (clip, clip.vision_model),
        "whisper": (whisper, whisper.get_encoder()),
        "whisper_asr": (whisper_asr, whisper_asr.get_encoder()),
        "llama": (LlamaForCausalLM(tiny_text_config("llama", vocab_size=LM_VOCAB)), None),
    }
    found = {}
    for name, (module, part) in parts.items():
        module.save_pretrained(root / name)
        found[name] = (str(root / name), (part or module).eval())
    tokenizer = build_bpe_tokenizer(["a red circle and a blue square"] * 10, vocab_size=300)
    tokenizer.save_pretrained(root / "tokenizer")
    found["tokenizer"] = (str(root / "tokenizer"), None)
    return found


def assert_same_weights(loaded: torch.nn.Module, saved: torch.nn.Module) -> None:
    ours, theirs = loaded.state_dict(), saved.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs), [
        key for key in theirs if not torch.equal(ours[key], theirs[key])
    ][:5]


def compose(folders, **encoders):
    tokenizer = AutoTokenizer.from_pretrained(folders["tokenizer"][0])
    model = OmniForConditionalGeneration.from_components(
        text=folders["llama"][0], tokenizer=tokenizer, **{k: folders[v][0] for k, v in encoders.items()}
    )
    return model.eval(), tokenizer


def test_llm_and_tokenizer_folders_load_with_placeholders_added(folders):
    model, tokenizer = compose(folders, image="clip_vision")
    saved = folders["llama"][1].state_dict()
    ours = model.language_model.state_dict()
    vocab = len(tokenizer)
    assert ours["model.embed_tokens.weight"].shape[0] == vocab > LM_VOCAB
    for key, tensor in saved.items():
        # Rows past the saved vocabulary are new (placeholders, tokenizer extras); the rest is the checkpoint.
        assert torch.equal(ours[key][:LM_VOCAB] if tensor.shape[0] == LM_VOCAB else ours[key], tensor), key
    image_id = model.config.modality_specs()["image"].placeholder_token_id
    assert image_id == tokenizer.convert_tokens_to_ids("<image>") < vocab
    OmniProcessor.from_model_config(model.config, tokenizer)  # the tokenizer and the model agree on ids


@pytest.mark.parametrize("folder", ["clip_vision", "clip_full"])
def test_vision_tower_folder_loads_its_weights(folders, folder):
    model, _ = compose(folders, image=folder)
    encoder = model.encoders["image"].model
    assert type(encoder).__name__ == "CLIPVisionModel"
    assert_same_weights(encoder, folders[folder][1])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = folders[folder][1](pixel_values=pixels).last_hidden_state
        assert torch.equal(encoder(pixel_values=pixels).last_hidden_state, expected)


@pytest.mark.parametrize("folder", ["whisper", "whisper_asr"])
def test_whisper_folder_loads_its_encoder(folders, folder):
    model, _ = compose(folders, audio=folder)
    encoder = model.encoders["audio"].model
    assert type(encoder).__name__ == "WhisperEncoder"
    assert_same_weights(encoder, folders[folder][1])
    mels = torch.randn(1, 80, 100)
    with torch.no_grad():
        expected = folders[folder][1](input_features=mels).last_hidden_state
        assert torch.equal(encoder(input_features=mels).last_hidden_state, expected)
