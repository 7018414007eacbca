"""Graceful shutdown: the request in flight completes; new ones get 503 while draining."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx

from .conftest import start_server


def test_in_flight_request_completes_and_new_ones_get_503(loaded):
    server, url = start_server(loaded)
    payload = {
        "model": "tiny",
        "max_tokens": 150,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": "red"}],
    }
    streamed, started = [], threading.Event()

    def long_request() -> None:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=payload, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    streamed.append(line[6:])
                    started.set()

    client = threading.Thread(target=long_request)
    client.start()
    assert started.wait(30)
    server.server.handle_exit(signal.SIGTERM, None)  # what uvicorn calls on SIGTERM / Ctrl-C
    deadline = time.monotonic() + 10
    while not server.state.draining:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    refused = httpx.post(f"{url}/v1/chat/completions", json={**payload, "stream": False, "max_tokens": 2}, timeout=30)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "server_shutting_down"
    assert httpx.get(f"{url}/health", timeout=30).status_code == 503
    assert not streamed or streamed[-1] != "[DONE]", "the long request should still be running"
    client.join(60)
    assert streamed[-1] == "[DONE]"
    finals = [json.loads(s)["choices"][0]["finish_reason"] for s in streamed[:-1]]
    assert finals[-1] == "length" and finals.count(None) == len(finals) - 1
    deadline = time.monotonic() + 20
    while server.server.started and not server.server.should_exit:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    server._thread.join(20)
    assert not server._thread.is_alive()
