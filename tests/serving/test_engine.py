"""Continuous batching: rows join mid-decode and leave when done, and greedy answers never change."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from omnifuse.serving.batch import RunningBatch
from omnifuse.serving.engine import Engine
from omnifuse.serving.sampling import SamplingParams, next_token

PROMPTS = [
    "red",
    "what color is the circle? red blue green, describe",
    "blue green",
    "describe the sound and the video in one word please what color is it",
    "the circle",
]


class Collector:
    def __init__(self) -> None:
        self.events, self.done = [], threading.Event()
        self.first_at = None

    def __call__(self, event) -> None:
        self.first_at = self.first_at or time.monotonic()
        self.events.append(event)
        if event.kind != "text":
            self.done.set()

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if e.kind == "text")


def encode(processor, prompt: str, image: bytes | None = None):
    content = [{"type": "text", "text": prompt}]
    if image is not None:
        content.insert(0, {"type": "image", "image": image})
    return processor.encode_conversation([{"role": "user", "content": content}], add_generation_prompt=True)


@pytest.fixture(scope="module")
def engine(loaded):
    model, processor = loaded
    engine = Engine(model, processor.tokenizer, max_batch=8).start()
    yield engine
    engine.stop()


def run(engine, sample, max_tokens=12, **params) -> Collector:
    sink = Collector()
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, **params)
    engine.submit(sample.input_ids, sample.media, params, sink)
    return sink


def test_greedy_output_is_identical_alone_or_joining_a_running_batch(engine, loaded, media):
    _, processor = loaded
    samples = [encode(processor, p, media.png(colour=(40 * i, 0, 0)) if i % 2 else None) for i, p in enumerate(PROMPTS)]
    alone = []
    for sample in samples:
        sink = run(engine, sample, max_tokens=48)
        assert sink.done.wait(60)
        alone.append(sink)
    wait_idle(engine)
    # Each later prompt joins while the earlier ones are decoding (different lengths, so left padding);
    # 48 tokens keep the first rows running while the test thread submits the rest on a busy machine.
    sinks = []
    for sample in samples:
        sinks.append(run(engine, sample, max_tokens=48))
        while sinks[-1].first_at is None:
            time.sleep(0.001)
    peak = max_running(engine, sinks)
    assert all(s.done.wait(60) for s in sinks)
    assert peak >= 2, "requests should have shared decoding steps"
    for lone, batched in zip(alone, sinks):
        assert batched.text == lone.text
        assert batched.events[-1].completion_tokens == lone.events[-1].completion_tokens


def wait_idle(engine) -> None:
    deadline = time.monotonic() + 10
    while not engine.idle():  # a finished row leaves the batch right after its last event
        assert time.monotonic() < deadline
        time.sleep(0.001)


def max_running(engine, sinks) -> int:
    peak = 0
    while not all(s.done.is_set() for s in sinks):
        peak = max(peak, engine.running)
        time.sleep(0.0005)
    return peak


def test_concurrent_requests_never_see_each_others_tokens(engine, loaded):
    _, processor = loaded
    expected = {}
    for prompt in PROMPTS:
        sink = run(engine, encode(processor, prompt), max_tokens=10)
        sink.done.wait(60)
        expected[prompt] = sink.text
    # Encoded here, not in the threads: a transformers tokenizer is not safe to call from several threads
    # at once (the server encodes under a lock for that reason); the engine is what runs concurrently.
    encoded = {p: encode(processor, p) for p in PROMPTS}
    sinks = {}
    threads = [
        threading.Thread(target=lambda p=p: sinks.setdefault(p, run(engine, encoded[p], 10))) for p in PROMPTS * 2
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for prompt, sink in sinks.items():
        assert sink.done.wait(60) and sink.text == expected[prompt]


def test_max_tokens_and_stop_token_end_a_request(engine, loaded):
    _, processor = loaded
    sample = encode(processor, "red")
    sink = run(engine, sample, max_tokens=3)
    assert sink.done.wait(30)
    assert sink.events[-1].finish_reason == "length" and sink.events[-1].completion_tokens == 3
    first = next_token_of(loaded, sample)
    stopped = run(engine, sample, max_tokens=8, stop_token_ids=(first,))
    assert stopped.done.wait(30)
    assert stopped.events[-1].finish_reason == "stop" and stopped.events[-1].completion_tokens == 1


def next_token_of(loaded, sample) -> int:
    model, _ = loaded
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([sample.input_ids])).logits[0, -1]
    return int(logits.argmax())


def test_a_cancelled_request_leaves_the_batch(engine, loaded):
    _, processor = loaded
    sink = Collector()
    request = engine.submit(encode(processor, "red").input_ids, {}, SamplingParams(max_tokens=400, temperature=0), sink)
    while sink.first_at is None:
        time.sleep(0.001)
    request.cancel()
    assert sink.done.wait(30) and sink.events[-1].finish_reason == "cancelled"
    assert sink.events[-1].completion_tokens < 400


def test_top_p_keeps_only_the_nucleus():
    logits = torch.tensor([5.0, 4.0, -10.0, -10.0])
    params = SamplingParams(temperature=1.0, top_p=0.5, seed=0)
    generator = params.generator()
    assert {next_token(logits, params, generator) for _ in range(50)} == {0}


def test_running_batch_left_pads_and_trims():
    from transformers import DynamicCache

    def cache(length: int, value: float) -> DynamicCache:
        c = DynamicCache()
        c.update(torch.full((1, 2, length, 4), value), torch.full((1, 2, length, 4), value), 0)
        return c

    batch = RunningBatch()
    batch.add(cache(3, 1.0), torch.ones((1, 3), dtype=torch.long), [5])
    batch.add(cache(5, 2.0), torch.ones((1, 5), dtype=torch.long), [6])
    ids, mask, positions = batch.step_inputs()
    assert ids.tolist() == [[5], [6]] and positions.tolist() == [[3], [5]]
    assert mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert batch.cache.layers[0].keys[0, 0, :2].abs().sum() == 0  # the padding
    batch.keep([0])
    assert batch.mask.tolist() == [[1, 1, 1]] and batch.cache.layers[0].keys.shape[2] == 3


def test_a_failing_step_fails_its_rows_and_the_engine_goes_on(engine, loaded, monkeypatch):
    _, processor = loaded
    real_step = engine._decode_step

    def broken_once():
        monkeypatch.setattr(engine, "_decode_step", real_step)
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(engine, "_decode_step", broken_once)
    failed = run(engine, encode(processor, "red"), max_tokens=5)
    assert failed.done.wait(30) and failed.events[-1].kind == "error"
    assert "simulated" in str(failed.events[-1].error)
    after = run(engine, encode(processor, "red"), max_tokens=5)
    assert after.done.wait(30) and after.events[-1].kind == "done"
