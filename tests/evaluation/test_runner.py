import pytest
import torch

from omnifuse.evaluation.runner import EvalItem, evaluate, format_table, split_answer
from omnifuse.processing.tokenizer import build_bpe_tokenizer


class ScriptedModel:
    """Answers from a script, through the real processor and decoding path."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.device = tokenizer, list(answers), torch.device("cpu")

    def eval(self):
        return self

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        rows = []
        for _ in range(input_ids.shape[0]):
            ids = self.tokenizer(self.answers.pop(0), add_special_tokens=False).input_ids + [
                self.tokenizer.eos_token_id
            ]
            rows.append(ids + [self.tokenizer.pad_token_id] * (max_new_tokens - len(ids)))
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)


def conversation(question, answer):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def test_split_answer_takes_the_last_assistant_turn():
    item = split_answer(conversation("color?", " red "), "image_color", "a.jsonl:3")
    assert item.answer == "red" and item.messages == conversation("color?", "red")[:1]
    with pytest.raises(ValueError, match="a.jsonl:3: the last message"):
        split_answer(conversation("q", "a")[:1], source="a.jsonl:3")


def test_exact_match_per_question_type():
    from omnifuse import OmniProcessor

    tok = build_bpe_tokenizer(["red blue two three"], vocab_size=280)
    processor = OmniProcessor(tok, modalities={})
    items = [
        EvalItem(conversation("c?", "red")[:1], "red", "color"),
        EvalItem(conversation("c?", "blue")[:1], "blue", "color"),
        EvalItem(conversation("n?", "two")[:1], "two", "count"),
    ]
    model = ScriptedModel(tok, ["red", "red", " two "])
    result = evaluate(model, processor, items, batch_size=2)
    assert result["per_question"] == {"color": 0.5, "count": 1.0}
    assert result["accuracy"] == round(2 / 3, 4)
    assert result["predictions"][1] == "red"
    table = format_table(result["per_question"], {"color": 0.125})
    assert "color" in table and "50.00%" in table and "0.12" in table


def test_records_that_cannot_be_encoded_are_skipped_and_named():
    from omnifuse import OmniProcessor

    tok = build_bpe_tokenizer(["red blue"], vocab_size=280)
    processor = OmniProcessor(tok, modalities={})
    bad = [{"role": "user", "content": [{"type": "image", "path": "x.png"}]}]  # no image encoder here
    items = [EvalItem(bad, "red", "color", "d.jsonl:1"), EvalItem(conversation("c?", "red")[:1], "red", "color")]
    result = evaluate(ScriptedModel(tok, ["red"]), processor, items, batch_size=4)
    assert result["accuracy"] == 1.0 and result["evaluated"] == 1 and result["skipped"] == 1
    assert result["skips"][0].startswith("d.jsonl:1: image") and result["predictions"] == [None, "red"]


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_must_be_positive(batch_size):
    from omnifuse import OmniProcessor
    from omnifuse.errors import UsageError

    processor = OmniProcessor(build_bpe_tokenizer(["a"], vocab_size=280), modalities={})
    with pytest.raises(UsageError, match="batch_size"):
        evaluate(None, processor, [], batch_size=batch_size)
    with pytest.raises(UsageError, match="no records to evaluate"):
        evaluate(None, processor, [], batch_size=1)
