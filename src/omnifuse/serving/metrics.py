"""Prometheus metrics of one server (own registry, so several servers in one process never collide).

Example:
    >>> metrics = ServingMetrics()
    >>> metrics.requests.labels(status="200").inc()
    >>> text = metrics.render()   # what GET /metrics returns
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServingMetrics:
    """Requests by status, tokens, queue length, running batch, batch sizes, latency and time to first token."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "omnifuse_requests", "HTTP requests to the API, by status code", ["status"], registry=reg
        )
        self.prompt_tokens = Counter("omnifuse_prompt_tokens", "prompt tokens of finished requests", registry=reg)
        self.completion_tokens = Counter("omnifuse_completion_tokens", "generated tokens", registry=reg)
        self.queue_length = Gauge("omnifuse_queue_length", "requests waiting to join the batch", registry=reg)
        self.running = Gauge("omnifuse_running_requests", "requests in the running batch", registry=reg)
        self.batch_size = Histogram(
            "omnifuse_batch_size", "rows per decoding step", buckets=BATCH_BUCKETS, registry=reg
        )
        self.latency = Histogram(
            "omnifuse_request_latency_seconds", "submit to last token", buckets=LATENCY_BUCKETS, registry=reg
        )
        self.first_token = Histogram(
            "omnifuse_time_to_first_token_seconds", "submit to first token", buckets=LATENCY_BUCKETS, registry=reg
        )
        self.media_cache_hits = Counter(
            "omnifuse_media_cache_hits", "media items served from the encoder cache", registry=reg
        )
        self.media_cache_misses = Counter(
            "omnifuse_media_cache_misses", "media items run through an encoder", registry=reg
        )

    def observe_finished(self, request, event) -> None:
        """Record a finished engine request (called from the engine thread)."""
        now = time.monotonic()
        self.prompt_tokens.inc(event.prompt_tokens)
        self.latency.observe(now - request.submitted)
        if request.first_token_at is not None:
            self.first_token.observe(request.first_token_at - request.submitted)

    def render(self) -> bytes:
        return generate_latest(self.registry)
