"""processing/grounding.py: grounded phrases -> the box centre at the phrase's last token, or a clear error."""

import pytest
import torch
from PIL import Image

from omnifuse.benchmark.common import BACKGROUND
from omnifuse.data.collator import MultimodalCollator
from omnifuse.processing.grounding import GROUNDING_KEY, Region, parse_regions
from omnifuse.training.build import build_model
from omnifuse.training.recipe import ModelSection

QUESTION = "Is the red circle left of the blue square?"


@pytest.fixture(scope="module")
def processor():
    text = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 256}  # fmt: skip
    image = {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
             "num_hidden_layers": 1, "num_attention_heads": 4, "image_size": 32, "patch_size": 8}  # fmt: skip
    corpus = [{"role": "user", "content": QUESTION + " Which shape is it? What color?"}]
    from omnifuse.data.formats import Record

    _, processor = build_model(
        ModelSection(text=text, image=image, tokenizer={"build": {"vocab_size": 300}}),
        [Record(messages=corpus, source="corpus")] * 4,
    )
    return processor


def grounded_messages(regions, answer="left"):
    image = Image.new("RGB", (32, 32), BACKGROUND)
    return [
        {"role": "user", "content": [{"type": "image", "image": image},
                                     {"type": "text", "text": QUESTION, "regions": regions}]},
        {"role": "assistant", "content": answer},
    ]  # fmt: skip


RED = {"phrase": "red", "box": [0.0, 0.25, 0.5, 0.75]}
BLUE = {"phrase": "blue square", "box": [0.5, 0.0, 1.0, 0.5]}


def test_regions_give_span_and_box_centre():
    assert parse_regions({"text": QUESTION, "regions": [RED, BLUE]}) == [
        Region(7, 10, (0.25, 0.5)),
        Region(30, 41, (0.75, 0.25)),
    ]
    assert parse_regions({"text": QUESTION}) == []
    # `start` picks an occurrence explicitly
    assert parse_regions({"text": "the red and the red", "regions": [{**RED, "start": 16}]})[0].start == 16


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ({"phrase": "green", "box": [0, 0, 1, 1]}, "does not occur"),
        ({"phrase": "red", "box": [0, 0, 1.5, 1]}, "0 <= x0 < x1 <= 1"),
        ({"phrase": "red", "box": [0.5, 0, 0.5, 1]}, "0 <= x0 < x1 <= 1"),
        ({"phrase": "red", "box": [0, 0, 1]}, "[x0, y0, x1, y1]"),
        ({"phrase": "red", "box": [0, 0, float("nan"), 1]}, "finite"),
        ({"phrase": "", "box": [0, 0, 1, 1]}, "non-empty"),
        ({"phrase": "red", "box": [0, 0, 1, 1], "start": 3}, "not at character 3"),
        ("red", "must be an object"),
    ],
)
def test_bad_regions_are_named(region, message):
    with pytest.raises(ValueError, match=r"regions\[1\]") as err:
        parse_regions({"text": QUESTION, "regions": [RED, region]})
    assert message in str(err.value)


def test_labels_carry_each_box_centre_at_the_phrase_last_token(processor):
    batch = processor.apply_chat_template([grounded_messages([RED, BLUE])], return_labels=True)
    xy = batch[GROUNDING_KEY][0]
    ids = batch["input_ids"][0].tolist()
    grounded = (xy[:, 0] >= 0).nonzero().flatten().tolist()
    decode = processor.tokenizer.decode
    assert decode(ids[: grounded[0] + 1]).endswith("Is the red")  # the phrase's last token, whatever its split
    assert decode(ids[: grounded[1] + 1]).endswith("the blue square")
    assert xy[grounded].tolist() == [[0.25, 0.5], [0.75, 0.25]]
    # media expansion before the question moved the indices: the image's tokens lie before both
    image_id = processor.placeholder("image").token_id
    assert max(i for i, t in enumerate(ids) if t == image_id) < grounded[0]


def test_no_targets_without_labels_or_regions(processor):
    plain = grounded_messages([])
    plain[0]["content"][1].pop("regions")
    assert GROUNDING_KEY not in processor.apply_chat_template([plain], return_labels=True)
    assert GROUNDING_KEY not in processor.apply_chat_template([grounded_messages([RED])])  # inference


def test_left_padding_shifts_the_targets(processor):
    short = grounded_messages([RED], answer="left")
    long = grounded_messages([RED], answer="left of it, clearly and without doubt")
    batch = processor.apply_chat_template([short, long], return_labels=True, padding_side="left")
    ids, xy = batch["input_ids"], batch[GROUNDING_KEY]
    rows = [(xy[r, :, 0] >= 0).nonzero().flatten().tolist() for r in range(2)]
    for r in range(2):
        assert processor.tokenizer.decode(ids[r, : rows[r][0] + 1], skip_special_tokens=True).endswith("the red")
    assert rows[0][0] > rows[1][0]  # the short row was padded on the left


def test_bad_region_error_names_message_and_part(processor):
    with pytest.raises(ValueError, match=r"message 0, part 1: regions\[0\]: phrase 'green'"):
        processor.apply_chat_template([grounded_messages([{"phrase": "green", "box": [0, 0, 1, 1]}])])


def test_collator_truncation_and_packing_keep_targets_in_place(processor):
    messages = grounded_messages([RED, BLUE])
    padded = MultimodalCollator(processor)([messages])
    where = (padded[GROUNDING_KEY][0, :, 0] >= 0).nonzero().flatten()
    packed = MultimodalCollator(processor, packing=True, pack_length=200)([messages, messages])
    assert packed[GROUNDING_KEY].shape[:2] == packed["input_ids"].shape
    length = int(padded["attention_mask"].sum())
    second = (packed[GROUNDING_KEY][0, length:, 0] >= 0).nonzero().flatten()
    assert torch.equal(second, where)  # the second sample's targets at the same offsets in its segment
    two_turns = grounded_messages([RED]) + [
        {"role": "user", "content": [{"type": "text", "text": QUESTION, "regions": [BLUE]}]},
        {"role": "assistant", "content": "right"},
    ]
    full = MultimodalCollator(processor)([two_turns])[GROUNDING_KEY][0, :, 0]
    first, second = (full >= 0).nonzero().flatten().tolist()
    cut = MultimodalCollator(processor, max_length=second)([two_turns])  # ends before the second phrase
    assert (cut[GROUNDING_KEY][0, :, 0] >= 0).nonzero().flatten().tolist() == [first]
