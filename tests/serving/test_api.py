"""The OpenAI API through the official `openai` client, unchanged: text, image, audio, video, turns, streaming."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0, timeout=60)


def ask(client, content, **options):
    options = {"max_tokens": 5, "temperature": 0, **options}
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}], **options)


def prompt_length(loaded, content) -> int:
    """Expanded input_ids length of the same prompt, computed by the processor directly."""
    from omnifuse.serving.fetch import FetchPolicy
    from omnifuse.serving.limits import ServerLimits
    from omnifuse.serving.parts import convert_messages

    _, processor = loaded
    messages = convert_messages(
        [{"role": "user", "content": content}], processor.modality_for, FetchPolicy(), ServerLimits()
    )
    return len(processor.encode_conversation(messages, add_generation_prompt=True).input_ids)


def test_models_and_health(client, served):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(f"{served.url}/health").json()["status"] == "ok"


def test_text_only_counts_usage(client, loaded):
    reply = ask(client, "what color is the circle?", max_tokens=4)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens == prompt_length(loaded, "what color is the circle?")
    assert 1 <= reply.usage.completion_tokens <= 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_image_as_data_uri(client, loaded, media):
    content = [
        {"type": "image_url", "image_url": {"url": media.data_uri(media.png(), "image/png")}},
        {"type": "text", "text": "what color?"},
    ]
    reply = ask(client, content)
    text_only = prompt_length(loaded, "what color?")
    assert reply.usage.prompt_tokens == prompt_length(loaded, content) > text_only + 10  # image tokens counted


def test_audio_as_input_audio(client, loaded, media):
    content = [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(media.wav()).decode(), "format": "wav"}},
        {"type": "text", "text": "describe the sound"},
    ]
    assert ask(client, content).usage.prompt_tokens == prompt_length(loaded, content)


def test_video_url_as_data_uri(client, loaded, media):
    content = [
        {"type": "video_url", "video_url": {"url": media.data_uri(media.video(), "video/mp4")}},
        {"type": "text", "text": "describe the video"},
    ]
    assert ask(client, content).usage.prompt_tokens == prompt_length(loaded, content)


def test_several_turns_with_an_image_in_an_earlier_turn(client, media):
    image = {"type": "image_url", "image_url": {"url": media.data_uri(media.png(), "image/png")}}
    messages = [
        {"role": "system", "content": "answer in one word"},
        {"role": "user", "content": [image, {"type": "text", "text": "what color is the circle?"}]},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "and the background?"},
    ]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=3, temperature=0)
    alone = ask(client, "and the background?", max_tokens=3)
    assert reply.usage.prompt_tokens > alone.usage.prompt_tokens + 10


def test_streaming_matches_the_plain_answer(client):
    plain = ask(client, "describe the sound", max_tokens=8)
    stream = ask(client, "describe the sound", max_tokens=8, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_max_completion_tokens_bounds_the_answer(client):
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "red"}], max_completion_tokens=3, temperature=0
    )
    assert reply.usage.completion_tokens <= 3
    assert reply.choices[0].finish_reason == ("length" if reply.usage.completion_tokens == 3 else "stop")


def test_seeded_sampling_repeats_and_stop_strings_cut(client):
    first = ask(client, "red blue green", temperature=1.0, top_p=0.9, seed=7, max_tokens=8)
    again = ask(client, "red blue green", temperature=1.0, top_p=0.9, seed=7, max_tokens=8)
    assert first.choices[0].message.content == again.choices[0].message.content
    greedy = ask(client, "red blue green", max_tokens=8).choices[0].message.content
    if len(greedy) >= 3:
        stop = greedy[1:3]
        cut = ask(client, "red blue green", max_tokens=8, stop=[stop])
        assert cut.choices[0].message.content == greedy[: greedy.index(stop)]
        assert cut.choices[0].finish_reason == "stop"


def test_a_repeated_image_skips_its_encoder(client, served, media):
    cache = served.server.engine.media_cache
    content = [
        {"type": "image_url", "image_url": {"url": media.data_uri(media.png(colour=(1, 2, 3)), "image/png")}},
        {"type": "text", "text": "color?"},
    ]
    hits, misses = cache.hits, cache.misses
    ask(client, content)
    assert (cache.hits, cache.misses) == (hits, misses + 1)
    ask(client, content)
    assert (cache.hits, cache.misses) == (hits + 1, misses + 1)


def test_metrics_report_requests_tokens_and_batches(client, served):
    ask(client, "red")
    text = httpx.get(f"{served.url}/metrics").text
    for name in (
        'omnifuse_requests_total{status="200"}',
        "omnifuse_completion_tokens_total",
        "omnifuse_queue_length",
        "omnifuse_batch_size_bucket",
        "omnifuse_request_latency_seconds_bucket",
        "omnifuse_time_to_first_token_seconds_bucket",
        "omnifuse_media_cache_misses_total",
    ):
        assert name in text, name


def test_web_page_is_served(served):
    page = httpx.get(f"{served.url}/")
    assert page.status_code == 200 and "omnifuse chat" in page.text and "/v1/chat/completions" in page.text


def test_concurrent_requests_with_typed_placeholders_stay_text(client, loaded):
    """transformers flips a tokenizer flag to keep a typed "<image>" as text; requests encoded at the same
    time must not see each other's setting (a typed placeholder would become a media slot)."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = ["what is <image> here? <audio>", "red blue green", "<video> and <image>", "describe it"] * 4
    expected = {p: prompt_length(loaded, p) for p in set(prompts)}
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda p: ask(client, p, max_tokens=2), prompts))
    assert [r.usage.prompt_tokens for r in replies] == [expected[p] for p in prompts]


def test_a_client_that_goes_away_frees_its_row(served, monkeypatch):
    import time

    engine, handles = served.server.engine, []
    submit = engine.submit
    monkeypatch.setattr(engine, "submit", lambda *a, **k: handles.append(submit(*a, **k)) or handles[-1])
    payload = {
        "model": "tiny",
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": "red"}],
    }
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=payload, timeout=60) as response:
        next(response.iter_lines())  # the first chunk: the request is decoding
    deadline = time.monotonic() + 20
    # The row leaves the engine first; the request handler then notices the closed stream and finishes.
    while not (served.server.engine.idle() and served.server.state.inflight == 0):
        assert time.monotonic() < deadline, "the abandoned request kept decoding or stayed in flight"
        time.sleep(0.01)
    assert handles[0].cancelled and handles[0].completion_tokens < 400


def test_the_server_keeps_the_callers_processor_limits(loaded, served):
    from omnifuse.processing.media import MediaLimits

    assert loaded[1].limits == MediaLimits()  # untouched by the servers' own limits
