"""Shared by the embeddings tests: a tiny image + audio model, its processor, heads and caption pairs."""

from pathlib import Path

import pytest

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.embeddings.embed import Embedder
from omnifuse.embeddings.pairs import write_caption_pairs
from omnifuse.embeddings.settings import ContrastiveSection
from omnifuse.embeddings.stage import heads_for
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer

CORPUS = ["a red circle and a blue square.", "a single low tone.", "3 short beeps.", "a green triangle."]


@pytest.fixture(scope="session")
def pairs(tmp_path_factory) -> Path:
    """24 caption pairs (images and tone clips) as a messages JSONL with media files."""
    folder = tmp_path_factory.mktemp("pairs")
    write_caption_pairs(folder, n=24, seed=0, modalities=("image", "audio"))
    return folder / "data.jsonl"


@pytest.fixture(scope="session")
def tiny_parts():
    """(model, processor) with an image and an audio modality, in eval mode."""
    import torch

    torch.manual_seed(0)
    tokenizer = build_bpe_tokenizer(CORPUS, vocab_size=300)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=len(tokenizer)),
        image=tiny_vision_config("siglip_vision_model"),
        audio=tiny_audio_config("whisper"),
        tokenizer=tokenizer,
    )
    return model.eval(), OmniProcessor.from_model_config(model.config, tokenizer)


def make_embedder(model, processor, **settings) -> Embedder:
    import torch

    from omnifuse.embeddings.towers import build_text_tower

    torch.manual_seed(0)
    section = ContrastiveSection(**settings)
    tower = build_text_tower(section.text_tower, model, processor.tokenizer)
    return Embedder(model, processor, heads_for(model, section, tower.hidden_size), tower)


@pytest.fixture(scope="session")
def model_dir(tiny_parts, tmp_path_factory) -> Path:
    """The tiny model saved with its processor and (untrained) embedding heads."""
    from omnifuse.embeddings.heads import save_heads

    model, processor = tiny_parts
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_heads(make_embedder(model, processor).heads, folder)
    return folder
