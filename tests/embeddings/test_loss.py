"""Contrastive losses: reference values, equal captions as positives, and training lowers the loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from omnifuse.embeddings.loss import contrastive_loss
from omnifuse.embeddings.pairs import ContrastiveCollator

from .conftest import make_embedder


def reference_siglip(media, text, t, b):
    logits = media @ text.T * math.exp(t) + b
    labels = 2 * torch.eye(len(media)) - 1
    return -F.logsigmoid(labels * logits).sum() / len(media)


def test_siglip_and_clip_match_their_definitions():
    torch.manual_seed(0)
    media, text = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    t, b = torch.tensor(1.5), torch.tensor(-2.0)
    got = contrastive_loss(media, text, t, b, "siglip")
    assert torch.allclose(got, reference_siglip(media, text, 1.5, -2.0), atol=1e-6)
    logits = media @ text.T * math.exp(1.5)
    clip = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    assert torch.allclose(contrastive_loss(media, text, t, b, "clip"), clip, atol=1e-6)
    with pytest.raises(ValueError, match="unknown contrastive loss"):
        contrastive_loss(media, text, t, b, "triplet")


def test_equal_captions_count_as_positives():
    media = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])  # two pictures of the same scene
    text = media.clone()  # ... with the same caption
    t, b = torch.tensor(math.log(10.0)), torch.tensor(-5.0)
    plain = contrastive_loss(media, text, t, b, "siglip")
    shared = contrastive_loss(media, text, t, b, "siglip", pair_ids=torch.tensor([7, 7, 9]))
    assert shared < plain  # pair (0, 1) is no longer punished as a negative


def test_training_lowers_the_loss_on_a_tiny_model(tiny_parts, pairs, loss="siglip"):
    model, processor = tiny_parts
    embedder = make_embedder(model, processor, loss=loss)
    records = [{"messages": __import__("json").loads(line)["messages"]} for line in pairs.read_text().splitlines()]
    for record in records:  # media paths relative to the pairs folder
        part = record["messages"][0]["content"][0]
        part["path"] = str(pairs.parent / part["path"])
    batch = ContrastiveCollator(processor)(records[:6])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = [p for p in embedder.heads.parameters() if p.requires_grad] + list(model.encoders.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-2)

    def step() -> float:
        media, text = embedder.media_vectors(batch["items"]), embedder.text_vectors(batch["texts"])
        value = contrastive_loss(media, text, embedder.heads.logit_scale, embedder.heads.logit_bias, loss)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        return float(value.detach())

    try:
        losses = [step() for _ in range(8)]
    finally:
        model.load_state_dict(state)  # the session fixture stays untouched
    assert losses[-1] < 0.6 * losses[0], losses
