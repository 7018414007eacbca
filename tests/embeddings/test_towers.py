"""Text towers: the composite's LM, or any local transformers text encoder folder (kept frozen)."""

import numpy as np
import pytest
from transformers import BertConfig, BertModel

from omnifuse.embeddings.towers import build_text_tower
from omnifuse.errors import FolderError
from omnifuse.processing.tokenizer import build_bpe_tokenizer

from .conftest import CORPUS, make_embedder


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    """A tiny BERT with its tokenizer saved as a folder, standing in for e.g. all-MiniLM-L6-v2."""
    folder = tmp_path_factory.mktemp("bert")
    tokenizer = build_bpe_tokenizer(CORPUS, vocab_size=300)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_folder_text_tower_is_frozen_and_sized_from_its_config(tiny_parts, encoder_folder):
    model, processor = tiny_parts
    tower = build_text_tower(str(encoder_folder), model, processor.tokenizer)
    assert tower.hidden_size == 24 and not any(p.requires_grad for p in tower.encoder.parameters())
    embedder = make_embedder(model, processor, text_tower=str(encoder_folder)).eval()
    assert embedder.heads.config.text_dim == 24
    vectors = embedder.embed(["a red circle.", "3 short beeps."])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert any(name.startswith("external_text.") for name, _ in embedder.named_parameters())


def test_unknown_tower_is_a_folder_error(tiny_parts, tmp_path):
    model, processor = tiny_parts
    with pytest.raises(FolderError, match="not 'lm' and not a local transformers model folder"):
        build_text_tower(str(tmp_path / "missing"), model, processor.tokenizer)
