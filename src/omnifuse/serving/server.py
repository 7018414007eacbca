"""Running the API: load a model folder, start the engine, serve with uvicorn, shut down gracefully.

Graceful shutdown (SIGINT/SIGTERM, or `shutdown()`): new requests get 503 at once, requests in flight
finish (up to `grace_seconds`), then the listener closes and the engine stops.

Example:
    >>> server = OmniServer.from_folder("runs/demo/model", port=0)
    >>> url = server.start_in_thread()          # tests; `server.run()` blocks (the CLI)
    >>> server.shutdown()
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from pathlib import Path

import uvicorn

from omnifuse.serving.api import ServingState, create_app
from omnifuse.serving.engine import Engine
from omnifuse.serving.fetch import FetchPolicy
from omnifuse.serving.limits import ServerLimits
from omnifuse.serving.metrics import ServingMetrics

log = logging.getLogger("omnifuse.serving")


class _DrainingServer(uvicorn.Server):
    """uvicorn's server whose first exit signal drains (503 for new requests) before closing."""

    owner: OmniServer

    def handle_exit(self, sig, frame) -> None:
        if self.owner.state.draining:
            return super().handle_exit(sig, frame)  # a second signal: stop now
        threading.Thread(target=self.owner.shutdown, name="omnifuse-drain", daemon=True).start()


class OmniServer:
    """An engine + the FastAPI app + a uvicorn server, with a graceful `shutdown()`."""

    def __init__(
        self,
        model,
        processor,
        model_name: str,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_batch: int = 16,
        limits: ServerLimits | None = None,
        policy: FetchPolicy | None = None,
        api_key: str | None = None,
        default_max_tokens: int = 256,
        media_cache_items: int = 256,
        grace_seconds: float = 30.0,
        rag=None,
    ) -> None:
        limits = limits or ServerLimits()
        processor = copy.copy(processor)  # the server's own limits, without changing the caller's processor
        processor.limits = limits.media_limits()
        metrics = ServingMetrics()
        engine = Engine(
            model, processor.tokenizer, max_batch=max_batch, media_cache_items=media_cache_items, metrics=metrics
        )
        self.state = ServingState(
            engine,
            processor,
            model_name,
            limits,
            policy or FetchPolicy(),
            metrics,
            default_max_tokens=default_max_tokens,
            rag=rag,
        )
        self.app = create_app(self.state, api_key=api_key)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
        self.server = _DrainingServer(config)
        self.server.owner = self
        self.grace_seconds = grace_seconds
        self._thread: threading.Thread | None = None

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs) -> OmniServer:
        from omnifuse.modeling.folder import load_omni_folder

        model, processor = load_omni_folder(folder)
        kwargs.setdefault("model_name", Path(folder).resolve().name)
        return cls(model, processor, **kwargs)

    @property
    def engine(self) -> Engine:
        return self.state.engine

    def run(self) -> None:
        """Serve until a signal (blocks)."""
        self.engine.start()
        try:
            self.server.run()
        finally:
            self.engine.stop()

    def start_in_thread(self, timeout: float = 30.0) -> str:
        """Serve from a background thread; returns the base URL once the port listens."""
        self.engine.start()
        self._thread = threading.Thread(target=self.server.run, name="omnifuse-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def shutdown(self) -> None:
        """Drain: 503 for new requests, wait for those in flight (up to the grace period), then stop."""
        self.state.draining = True
        deadline = time.monotonic() + self.grace_seconds
        while (self.state.inflight > 0 or not self.engine.idle()) and time.monotonic() < deadline:
            time.sleep(0.05)
        log.warning("drained (%d requests still in flight), stopping", self.state.inflight)
        self.server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(15)
        self.engine.stop()
