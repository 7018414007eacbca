"""Serving benchmark: 16 concurrent clients against the same requests sent one at a time.

Both runs go through the same `omnifuse serve` process (continuous batching on, encoder cache off);
the baseline is each request alone, as `model.generate` one request at a time would serve them. The
clients run in this process. Prints one JSON line: throughput ratio, p50/p99 latency under concurrency
and the lone request's latency.

    omnifuse bench serve [--clients 16] [--requests 32] [--max-tokens 32]
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
from PIL import Image

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.modeling.presets import tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer

SENTENCE = "what color is the circle square triangle red blue green yellow describe the picture in one word"
WORDS = SENTENCE.split(" ")


def small_model(hidden: int, layers: int):
    """A small LM + vision encoder built from configs (no download), with its processor."""
    tok = build_bpe_tokenizer([" ".join(WORDS)], vocab_size=400)
    torch.manual_seed(0)
    text = tiny_text_config(
        "qwen2", vocab_size=len(tok), hidden=hidden, layers=layers, heads=4, max_position_embeddings=2048
    )
    model = OmniForConditionalGeneration.from_components(text=text, image=tiny_vision_config(), tokenizer=tok)
    return model.eval(), OmniProcessor.from_model_config(model.config, tok)


def png_uri(seed: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), (seed * 37 % 256, seed * 91 % 256, 128)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def requests_for(n: int, max_tokens: int) -> list[dict]:
    """Prompts of varied length; every other one carries an image."""
    bodies = []
    for i in range(n):
        content = [{"type": "text", "text": " ".join(WORDS[: 3 + i % 12])}]
        if i % 2:
            content.insert(0, {"type": "image_url", "image_url": {"url": png_uri(i)}})
        bodies.append(
            {
                "model": "bench",
                "max_tokens": max_tokens,
                "temperature": 0,
                "messages": [{"role": "user", "content": content}],
            }
        )
    return bodies


def timed_post(client: httpx.Client, url: str, body: dict) -> tuple[float, int, int]:
    start = time.perf_counter()
    response = client.post(f"{url}/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - start
    tokens = response.json()["usage"]["completion_tokens"] if response.status_code == 200 else 0
    if response.status_code != 200:
        print(f"bench serve: HTTP {response.status_code}: {response.text[:300]}", file=sys.stderr)
    return elapsed, tokens, response.status_code


def run(url: str, bodies: list[dict], clients: int) -> dict:
    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=clients)) as client:
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda b: timed_post(client, url, b), bodies))
        wall = time.perf_counter() - start
    latencies = sorted(r[0] for r in results)
    return {
        "wall": wall,
        "tokens": sum(r[1] for r in results),
        "latencies": latencies,
        "errors": sum(r[2] != 200 for r in results),
    }


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: str, threads: int, max_batch: int, *extra: str) -> tuple[subprocess.Popen, str]:
    """`omnifuse serve` on a free loopback port, in its own process; returns it once /health answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "omnifuse.cli",
        "serve",
        "--model",
        folder,
        "--port",
        str(port),
        "--served-model-name",
        "bench",
        "--threads",
        str(threads),
        "--max-batch",
        str(max_batch),
        *extra,
    ]
    log = open(os.path.join(folder, "server.log"), "w")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("omnifuse serve did not start")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()  # SIGTERM: drains, then exits
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def measure(url: str, bodies: list[dict], clients: int, rounds: int) -> dict:
    """Alternate one-at-a-time and concurrent runs `rounds` times (the shared CPU's speed drifts)."""
    ratios, lone, concurrent, rates, errors = [], [], [], {"alone": [], "together": []}, 0
    for index in range(rounds):
        print(f"bench serve: round {index + 1}/{rounds}: one at a time, then {clients} clients", file=sys.stderr)
        alone = run(url, bodies, 1)
        together = run(url, bodies, clients)
        rates["alone"].append(alone["tokens"] / alone["wall"])
        rates["together"].append(together["tokens"] / together["wall"])
        ratios.append(rates["together"][-1] / rates["alone"][-1])
        lone += alone["latencies"]
        concurrent += together["latencies"]
        errors += alone["errors"] + together["errors"]
    lone_s = statistics.median(lone)
    concurrent.sort()
    p99 = percentile(concurrent, 0.99)
    return {
        "ratio": round(statistics.median(ratios), 2),
        "ratios": [round(r, 2) for r in ratios],
        "tokens_per_s_concurrent": round(statistics.median(rates["together"]), 1),
        "tokens_per_s_one_at_a_time": round(statistics.median(rates["alone"]), 1),
        "lone_latency_s": round(lone_s, 3),
        "p50_s": round(percentile(concurrent, 0.5), 3),
        "p99_s": round(p99, 3),
        "p99_over_lone": round(p99 / lone_s, 2),
        "errors": errors,
    }


def run_serve_bench(
    clients: int = 16,
    requests: int = 32,
    max_tokens: int = 32,
    rounds: int = 3,
    hidden: int = 128,
    layers: int = 4,
    threads: int = 1,
) -> dict:
    """Start `omnifuse serve` on a small model, measure, stop it; returns the JSON line's figures."""
    model, processor = small_model(hidden, layers)
    folder = tempfile.mkdtemp(prefix="bench-serve-")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    server, url = start_server(folder, threads, clients, "--media-cache-items", "0")
    bodies = requests_for(requests, max_tokens)
    try:
        run(url, bodies[:2], 1)  # warm-up
        figures = measure(url, bodies, clients, rounds)
    finally:
        stop_server(server)
        errors = (Path(folder) / "server.log").read_text()
        shutil.rmtree(folder, ignore_errors=True)
    if "Traceback" in errors:
        print(errors[-3000:], file=sys.stderr)
    head = {"task": "bench-serve", "clients": clients, "requests": len(bodies), "max_tokens": max_tokens}
    return {**head, "threads": threads, **figures}
