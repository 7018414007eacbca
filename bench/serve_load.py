"""Load test: 64 concurrent clients for a bounded time against `omnifuse serve` on loopback.

Mixed traffic (text, images, streaming and not, a few hostile requests); reports the status counts
(the goal is 0 5xx), throughput, latency percentiles and the server's resident memory over time.

    PYTHONPATH=src python bench/serve_load.py [--clients 64] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from omnifuse.bench.serve import percentile, png_uri, requests_for, small_model, start_server, stop_server


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hostile(i: int) -> dict:
    """A request the server must refuse with a 4xx."""
    bad = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA"}},
        {"type": "hologram"},
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/"}},
    ][i % 3]
    return {"model": "bench", "max_tokens": 4, "messages": [{"role": "user", "content": [bad]}]}


def client_loop(url: str, bodies: list[dict], stop_at: float, seed: int, record) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=300) as client:
        while time.monotonic() < stop_at:
            body = hostile(rng.randrange(3)) if rng.random() < 0.05 else dict(rng.choice(bodies))
            body["stream"] = rng.random() < 0.3
            start = time.perf_counter()
            try:
                response = client.post(f"{url}/v1/chat/completions", json=body)
                text = response.text  # a stream is read to its end
                tokens = (
                    max(0, text.count('"content"') - 1)
                    if body["stream"]
                    # minus the role chunk
                    else (response.json().get("usage", {}).get("completion_tokens", 0) if response.is_success else 0)
                )
                record(response.status_code, time.perf_counter() - start, tokens)
            except httpx.HTTPError as err:
                record(f"transport:{type(err).__name__}", time.perf_counter() - start, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    model, processor = small_model(128, 4)
    folder = tempfile.mkdtemp(prefix="bench-load-")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    server, url = start_server(folder, args.threads, 16)
    bodies = requests_for(48, args.max_tokens)
    bodies += [
        {
            **bodies[0],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": png_uri(1)}},
                        {"type": "text", "text": "same image again"},
                    ],
                }
            ],
        }
    ]
    statuses, latencies, tokens, lock = Counter(), [], [0], threading.Lock()

    def record(status, seconds: float, n: int) -> None:
        with lock:
            statuses[str(status)] += 1
            latencies.append(seconds)
            tokens[0] += n

    memory = [rss_mib(server.pid)]
    stop_at = time.monotonic() + args.seconds
    print(f"bench serve-load: {args.clients} clients for {args.seconds:g} s ...", file=sys.stderr)
    threads = [
        threading.Thread(target=client_loop, args=(url, bodies, stop_at, i, record)) for i in range(args.clients)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        memory.append(rss_mib(server.pid))
        time.sleep(1.0)
    wall = time.perf_counter() - start
    memory.append(rss_mib(server.pid))
    stop_server(server)
    shutil.rmtree(folder, ignore_errors=True)
    latencies.sort()
    result = {
        "task": "bench-serve-load",
        "clients": args.clients,
        "seconds": round(wall, 1),
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "server_errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "transport_errors": sum(n for s, n in statuses.items() if s.startswith("transport")),
        "tokens_per_s": round(tokens[0] / wall, 1),
        "p50_s": round(percentile(latencies, 0.5), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "rss_mib_start": round(memory[0], 1),
        "rss_mib_max": round(max(memory), 1),
        "rss_mib_end": round(memory[-1], 1),
        "rss_mib_first_half_max": round(max(memory[: len(memory) // 2 or 1]), 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
