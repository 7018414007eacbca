"""The adaptive question-type mix: weights from probe accuracy, types drawn by them, state kept for resuming."""

from collections import Counter

import pytest
import torch

from omnifuse.benchmark.dataset import PROBE_RECORDS, BenchmarkDataset
from omnifuse.benchmark.generate import RecordStream
from omnifuse.benchmark.mixture import FLOOR, SMOOTHING, TypeMixture
from omnifuse.modeling.presets import tiny_conv_config, tiny_text_config
from omnifuse.training.build import build_model
from omnifuse.training.recipe import ModelSection


def test_weights_follow_smoothed_accuracy_with_a_floor():
    mixture = TypeMixture(["a", "b", "c"])
    assert mixture.probabilities().tolist() == pytest.approx([1 / 3] * 3)  # nothing measured yet
    mixture.update({"a": 1.0, "b": 0.0})
    assert mixture.probabilities().tolist() == pytest.approx([FLOOR / (FLOOR * 3 + 2), 1.1 / 2.3, 1.1 / 2.3])
    mixture.update({"a": 0.0})
    assert mixture.accuracy["a"] == pytest.approx(SMOOTHING * 1.0)
    state = mixture.state_dict()
    restored = TypeMixture(["a", "b", "c"])
    restored.load_state_dict(state)
    assert restored.probabilities().tolist() == mixture.probabilities().tolist()
    with pytest.raises(ValueError, match=r"lacks: \['z'\]"):
        restored.load_state_dict({"z": 0.5})


def test_records_take_their_type_from_the_probabilities():
    stream = RecordStream(seed=0, modalities="image,text")
    names = [t.name for t in stream.types]
    only_text = [1.0 if name == "text_arith" else 0.0 for name in names]
    assert {stream.record(i, only_text).question_type for i in range(30)} == {"text_arith"}
    mostly_count = [0.9 if name == "image_count" else 0.1 / (len(names) - 1) for name in names]
    counts = Counter(stream.record(i, mostly_count).question_type for i in range(400))
    assert 320 <= counts["image_count"] <= 400
    assert stream.record(7, mostly_count).answer == stream.record(7, mostly_count).answer  # still deterministic


class KnowsAllButSums(torch.nn.Module):
    """Teacher-forced oracle: predicts every next token, except in text-only prompts (the sums)."""

    def __init__(self, processor):
        super().__init__()
        self.processor = processor

    def forward(self, input_ids, **media):
        logits = torch.zeros(*input_ids.shape, len(self.processor.tokenizer))
        logits[:, :-1].scatter_(-1, input_ids[:, 1:, None], 1.0)
        for row, ids in enumerate(input_ids):
            if "<image>" not in self.processor.tokenizer.decode(ids):
                logits[row] = 0.0
                logits[row, :, 0] = 1.0
        return type("Out", (), {"logits": logits})()


def test_adapt_measures_each_type_and_moves_samples_to_the_weak_one():
    dataset = BenchmarkDataset(records=2000, seed=0, modalities="image,text", adapt=True)
    section = ModelSection(
        text=tiny_text_config("llama").to_dict(),
        image=tiny_conv_config("resnet").to_dict(),
        tokenizer={"build": {"vocab_size": 300}},
    )
    _, processor = build_model(section, dataset.corpus()[:200])
    accuracy = dataset.adapt(KnowsAllButSums(processor), processor, probe=0)
    assert set(accuracy) == {t.name for t in dataset.stream.types}
    assert accuracy["text_arith"] == 0.0 and all(v == 1.0 for k, v in accuracy.items() if k != "text_arith")
    sums = sum(len(dataset[i].messages[0]["content"]) == 1 for i in range(300))  # no media part
    assert sums > 150  # weight 1.1 against 0.1 for each of the five solved image types (expected 206)
    assert PROBE_RECORDS == 16
    assert dataset.grounding_accuracy is None  # no grounding head


def test_adapt_measures_the_grounding_head_when_the_model_has_one():
    dataset = BenchmarkDataset(records=2000, seed=0, modalities="image,text", adapt=True)
    section = ModelSection(
        text=tiny_text_config("llama").to_dict(),
        image={**tiny_conv_config("resnet").to_dict(), "image_size": 32},
        tokenizer={"build": {"vocab_size": 300}},
        grounding={"layer": 1, "bins": 2},
    )
    model, processor = build_model(section, dataset.corpus()[:200])
    with torch.no_grad():  # a head that always says column 0, row 0
        model.grounding_head.linear.weight.zero_()
        model.grounding_head.linear.bias.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    dataset.adapt(model, processor, probe=0)
    records = [dataset.stream.record(i) for i in range(400)]
    centres = [r["box"] for rec in records for r in rec.regions]
    top_left = sum((x0 + x1) / 2 < 0.5 and (y0 + y1) / 2 < 0.5 for x0, y0, x1, y1 in centres) / len(centres)
    assert dataset.grounding_accuracy == pytest.approx(top_left, abs=0.15)  # the share of objects in that quarter
    assert dataset.lookup_accuracy is None  # no attend_layer
    model.enable_grounding({"layer": 1, "bins": 2, "attend_layer": 0})
    dataset.adapt(model, processor, probe=0)
    assert 0.0 <= dataset.lookup_accuracy <= 1.0  # measured (tests/modeling/test_grounding.py checks the count)


def test_a_round_robin_dataset_cannot_adapt():
    with pytest.raises(ValueError, match="round-robin; build it with adapt=True"):
        BenchmarkDataset(records=10, seed=0, modalities="text").adapt(None, None, probe=0)
