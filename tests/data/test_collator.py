import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.data.collator import MultimodalCollator, is_empty_batch, per_sample_loss
from omnifuse.data.formats import Record
from omnifuse.data.packing import first_fit
from omnifuse.data.sources import MessagesDataset
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.chat import IGNORE_INDEX
from omnifuse.processing.media import MediaError
from omnifuse.processing.tokenizer import build_bpe_tokenizer

CORPUS = [
    "user assistant system answer briefly. what color is the circle? red blue green.",
    "which sound is it? a low tone. <0.0s> <1.0s> it moves left",
] * 5
VIDEO_FRAMES = 2


@pytest.fixture(scope="module")
def tok():
    return build_bpe_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="module")
def built(tok):
    cache = {}

    def build(text="llama"):
        if text not in cache:
            torch.manual_seed(0)
            model = OmniForConditionalGeneration.from_components(
                text=tiny_text_config(text, vocab_size=len(tok)),
                image=tiny_vision_config(),
                audio=tiny_audio_config(),
                video=True,
                tokenizer=tok,
                modality_options={"video": {"processing": {"num_frames": VIDEO_FRAMES}}},
            ).eval()
            cache[text] = (model, OmniProcessor.from_model_config(model.config, tok))
        return cache[text]

    return build


@pytest.fixture
def processor(built):
    return built("llama")[1]


def turn(role, *parts):
    return {"role": role, "content": [p if isinstance(p, dict) else {"type": "text", "text": p} for p in parts]}


def image(color="red"):
    return {"type": "image", "image": Image.new("RGB", (32, 32), color)}


def audio(seconds=0.5):
    wave = np.sin(np.arange(int(16000 * seconds)) / 5).astype(np.float32)
    return {"type": "audio", "audio": wave, "sampling_rate": 16000}


def video():
    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(6)]
    return {"type": "video", "video": frames}


MULTI_TURN = [
    turn("system", "answer briefly"),
    turn("user", "what color is the circle?"),
    turn("assistant", "red"),
    turn("user", "and the tone?"),
    turn("assistant", "a low tone"),
]


def image_chat(color="green", answer="green"):
    return [turn("user", image(color), "what color is it?"), turn("assistant", answer)]


def audio_chat():
    return [turn("user", audio(), "which sound is it?"), turn("assistant", "a low tone")]


def video_chat(answer="it moves left"):
    return [turn("user", video(), "what moves?"), turn("assistant", answer)]


def placeholder_ids(processor):
    return {name: spec.placeholder_token_id for name, spec in processor.specs.items()}


def supervised_runs(tok, ids, labels):
    """Decoded runs of consecutive supervised tokens."""
    runs, current = [], []
    for token, label in zip(ids.tolist(), labels.tolist()):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs, current = runs + [current], []
    return [tok.decode(r) for r in runs + ([current] if current else [])]


def without_index(batch):
    return {k: v for k, v in batch.items() if k != "sample_index"}


def test_only_assistant_tokens_and_turn_ends_are_supervised(processor, tok):
    batch = MultimodalCollator(processor)([Record(MULTI_TURN, "a.jsonl:1"), image_chat(), audio_chat()])
    ids, labels = batch["input_ids"], batch["labels"]
    assert supervised_runs(tok, ids[0], labels[0]) == ["red<|im_end|>", "a low tone<|im_end|>"]
    assert supervised_runs(tok, ids[1], labels[1]) == ["green<|im_end|>"]
    assert supervised_runs(tok, ids[2], labels[2]) == ["a low tone<|im_end|>"]
    media = torch.isin(ids, torch.tensor(list(placeholder_ids(processor).values())))
    padding = batch["attention_mask"] == 0
    assert media.any() and padding.any()
    assert (labels[media | padding] == IGNORE_INDEX).all()
    expected = sum(len(tok(t).input_ids) + 1 for t in ("red", "a low tone", "green", "a low tone"))
    assert int((labels != IGNORE_INDEX).sum()) == expected


def test_text_and_media_samples_mix_in_one_batch(built, tok):
    model, processor = built("llama")
    collator = MultimodalCollator(processor)
    batch = collator([MULTI_TURN, image_chat(), audio_chat(), video_chat()])
    ids = batch["input_ids"]
    assert ids.shape[0] == 4 and batch["attention_mask"].shape == ids.shape == batch["labels"].shape
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    assert batch["pixel_values_videos"].shape == (VIDEO_FRAMES, 3, 32, 32)
    assert batch["input_features"].shape == (1, 80, 100)
    assert batch["input_features_mask"].sum().item() == 50  # 0.5 s of 1 s window, hop 160
    assert collator.stats == {
        "samples": 4,
        "dropped_too_long": 0,
        "truncated": 0,
        "tokens": int(batch["attention_mask"].sum()),
        "supervised_tokens": int((batch["labels"] != IGNORE_INDEX).sum()),
    }
    counts = {name: (ids == pid).sum(1).tolist() for name, pid in placeholder_ids(processor).items()}
    single = {name: (collator([c])["input_ids"] == pid).sum().item() for name, pid, c in _solo(processor)}
    assert counts == {
        "image": [0, single["image"], 0, 0],
        "audio": [0, 0, single["audio"], 0],
        "video": [0, 0, 0, single["video"]],
    }
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def _solo(processor):
    chats = {"image": image_chat(), "audio": audio_chat(), "video": video_chat()}
    return [(name, pid, chats[name]) for name, pid in placeholder_ids(processor).items()]


def first_target(processor, chat):
    labels = MultimodalCollator(processor)([chat])["labels"][0]
    return (labels != IGNORE_INDEX).nonzero()[0].item()


def test_long_text_sample_is_shortened_and_keeps_supervision(processor):
    chat = [turn("user", "what color is the circle?"), turn("assistant", " ".join(["red blue green"] * 20))]
    limit = max(first_target(processor, c) for c in (chat, MULTI_TURN)) + 3
    full = MultimodalCollator(processor)([chat, MULTI_TURN])
    collator = MultimodalCollator(processor, max_length=limit)
    batch = collator([chat, MULTI_TURN])
    assert full["attention_mask"].sum(1).min() > limit and batch["input_ids"].shape == (2, limit)
    assert batch["input_ids"].equal(full["input_ids"][:, :limit])
    assert batch["labels"].equal(full["labels"][:, :limit]) and (batch["labels"] != IGNORE_INDEX).sum(1).min() > 0
    assert collator.stats["truncated"] == 2 and collator.stats["dropped_too_long"] == 0


def test_samples_whose_media_or_supervision_would_be_cut_are_dropped_and_counted(processor):
    short = [turn("user", "what color is it?"), turn("assistant", "red")]
    image_late = short + image_chat()  # the first answer would fit, but only by cutting the image
    long_prompt = [turn("user", " ".join(["what color"] * 30)), turn("assistant", "red")]
    ids = MultimodalCollator(processor)([image_late])["input_ids"][0]
    image_start = (ids == placeholder_ids(processor)["image"]).nonzero()[0].item()
    collator = MultimodalCollator(processor, max_length=image_start + 8)
    batch = collator([Record(image_late, "a.jsonl:3"), short, long_prompt])
    assert batch["input_ids"].equal(MultimodalCollator(processor)([short])["input_ids"])
    assert "pixel_values" not in batch
    assert collator.stats["dropped_too_long"] == 2 and collator.stats["samples"] == 3
    empty = collator([image_late])
    assert is_empty_batch(empty) and empty["input_ids"].shape == (0, 0)
    assert collator.stats["dropped_too_long"] == 3


def test_a_media_span_is_whole_or_absent_at_every_cut(processor):
    video_id = placeholder_ids(processor)["video"]
    chat = video_chat(" ".join(["left"] * 10))
    full = MultimodalCollator(processor)([chat])
    ids, labels = full["input_ids"][0], full["labels"][0]
    video_positions = (ids == video_id).nonzero().flatten().tolist()
    expansion, first_target = len(video_positions), (labels != IGNORE_INDEX).nonzero()[0].item()
    between = [i for i in range(video_positions[0], video_positions[-1]) if ids[i] != video_id]
    assert expansion % VIDEO_FRAMES == 0 and between, "a timestamp marker sits between the two frames"
    kept = []
    for limit in range(2, len(ids) + 1):
        batch = MultimodalCollator(processor, max_length=limit)([chat])
        if not is_empty_batch(batch):
            kept.append(limit)
            assert (batch["input_ids"] == video_id).sum() == expansion
            assert batch["pixel_values_videos"].shape[0] == VIDEO_FRAMES
    # Kept exactly when the whole video and at least one answer token fit.
    assert first_target > video_positions[-1]
    assert kept == list(range(first_target + 1, len(ids) + 1))


def test_packing_restarts_positions_and_blocks_cross_sample_attention(processor):
    chats = [MULTI_TURN, image_chat(), audio_chat()]
    lengths = [MultimodalCollator(processor)([c])["input_ids"].shape[1] for c in chats]
    collator = MultimodalCollator(processor, packing=True, pack_length=sum(lengths), return_sample_index=True)
    batch = collator(chats)
    assert batch["input_ids"].shape == (1, sum(lengths))
    expected_positions = torch.cat([torch.arange(n) for n in lengths])
    assert torch.equal(batch["position_ids"][0], expected_positions)
    mask = batch["attention_mask"]
    assert mask.shape == (1, 1, sum(lengths), sum(lengths)) and mask.dtype == torch.bool
    a, b = lengths[0], lengths[0] + lengths[1]
    assert mask[0, 0, :a, :a].equal(torch.ones(a, a, dtype=torch.bool).tril())
    assert not mask[0, 0, a:b, :a].any() and not mask[0, 0, b:, :b].any()
    assert mask[0, 0, b:, b:].equal(torch.ones(lengths[2], lengths[2], dtype=torch.bool).tril())
    starts = [0, a, b]
    assert (batch["labels"][0, starts] == IGNORE_INDEX).all()
    assert batch["sample_index"][0].tolist() == [i for i, n in enumerate(lengths) for _ in range(n)]
    eager = MultimodalCollator(processor, packing=True, pack_length=sum(lengths), attn_implementation="eager")
    additive = eager(chats)["attention_mask"]
    assert additive.dtype == torch.float32
    assert (additive[mask] == 0).all() and (additive[~mask] == torch.finfo(torch.float32).min).all()


def test_first_fit_places_whole_samples_in_the_first_row_with_room():
    assert first_fit([5, 5, 3, 2, 4], capacity=8) == [[0, 2], [1, 3], [4]]
    with pytest.raises(ValueError, match="sample 1 has 9 tokens"):
        first_fit([3, 9], capacity=8)


@pytest.mark.parametrize("text", ["llama", "gpt2"])
def test_packed_and_padded_batches_give_the_same_per_sample_loss(built, text):
    model, processor = built(text)
    red_long = image_chat("red", " ".join(["red"] * 12))
    chats = [audio_chat(), red_long, image_chat("blue", "blue"), MULTI_TURN, video_chat()]
    lengths = [len(MultimodalCollator(processor)([c])["input_ids"][0]) for c in chats]
    # Rows fit audio + blue image, so first-fit puts the blue image before the (longer) red one.
    width = lengths[0] + lengths[2] + 2
    assert max(lengths) <= width < lengths[0] + lengths[1]
    padded = MultimodalCollator(processor, return_sample_index=True)(chats)
    packed = MultimodalCollator(processor, packing=True, pack_length=width, return_sample_index=True)(chats)
    order = packed["sample_index"][packed["sample_index"] >= 0].unique_consecutive().tolist()
    assert packed["input_ids"].shape[0] < len(chats) and order.index(2) < order.index(1)
    with torch.no_grad():
        out_padded = model(**without_index(padded))
        out_packed = model(**without_index(packed))
        # The same packed rows with a plain causal mask let samples see each other: the check has teeth.
        leaky = model(**without_index(packed) | {"attention_mask": torch.ones_like(packed["input_ids"])})
    loss_padded = per_sample_loss(out_padded.logits, padded["labels"], padded["sample_index"])
    loss_packed = per_sample_loss(out_packed.logits, packed["labels"], packed["sample_index"])
    loss_leaky = per_sample_loss(leaky.logits, packed["labels"], packed["sample_index"])
    diff = (loss_padded - loss_packed).abs().max().item()
    print(f"{text}: packed vs padded per-sample loss max abs diff {diff:.2e}")
    assert loss_padded.shape == (len(chats),) and torch.isfinite(loss_padded).all()
    assert diff <= 1e-5 and abs(out_padded.loss.item() - out_packed.loss.item()) <= 1e-5
    assert (loss_padded - loss_leaky).abs().max() > 1e-4


def test_flash_layout_is_one_row_whose_position_ids_separate_samples(built):
    model, processor = built("llama")
    chats = [MULTI_TURN, image_chat(), audio_chat()]
    padded = MultimodalCollator(processor, return_sample_index=True)(chats)
    flat = MultimodalCollator(
        processor, packing=True, pack_length=512, attn_implementation="flash_attention_2", return_sample_index=True
    )(chats)
    total = int(padded["attention_mask"].sum())
    assert flat["input_ids"].shape == (1, total) and flat["attention_mask"].equal(torch.ones(1, total).long())
    assert (flat["position_ids"][0] == 0).sum() == len(chats)
    # Without a mask (and without a cache), transformers derives the sample boundaries from position_ids on SDPA too.
    inputs = {k: v for k, v in without_index(flat).items() if k != "attention_mask"} | {"use_cache": False}
    with torch.no_grad():
        flat_loss = per_sample_loss(model(**inputs).logits, flat["labels"], flat["sample_index"])
        pad_loss = per_sample_loss(model(**without_index(padded)).logits, padded["labels"], padded["sample_index"])
    assert (flat_loss - pad_loss).abs().max() <= 1e-5


def test_broken_media_error_names_the_record_source(processor, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    record = Record([turn("user", {"type": "image", "path": str(broken)}, "hi"), turn("assistant", "red")], "t.jsonl:7")
    collator = MultimodalCollator(processor)
    with pytest.raises(MediaError, match=r"image \(t\.jsonl:7, message 0, part 0\): ") as info:
        collator([MULTI_TURN, record])
    assert "t.jsonl:7" in str(pickle.loads(pickle.dumps(info.value)))
    loader = torch.utils.data.DataLoader(MessagesDataset([record]), batch_size=1, collate_fn=collator, num_workers=1)
    # torch re-raises a worker's exception as RuntimeError when its type needs more than a message.
    with pytest.raises((MediaError, RuntimeError), match=r"t\.jsonl:7"):
        next(iter(loader))


def test_bad_settings_are_rejected(processor):
    with pytest.raises(ValueError, match="packing needs a row length"):
        MultimodalCollator(processor, packing=True)
    with pytest.raises(ValueError, match="flex_attention"):
        MultimodalCollator(processor, attn_implementation="flex_attention")
    with pytest.raises(TypeError, match="batch item 0: expected a Record"):
        MultimodalCollator(processor)([42])
