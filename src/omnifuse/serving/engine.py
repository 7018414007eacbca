"""The serving engine: one background thread owns the model and decodes every running request together.

A new request is prefilled alone (its media encoded once, through the content-hash cache), then its KV
cache joins the running batch at the next step (continuous batching); finished rows leave at once.

Example:
    >>> engine = Engine(model, processor.tokenizer, max_batch=16).start()
    >>> request = engine.submit(sample.input_ids, sample.media, SamplingParams(max_tokens=32), sink=print)
    >>> engine.stop()
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from omnifuse.errors import OmnifuseInputError
from omnifuse.serving.batch import RunningBatch
from omnifuse.serving.media_cache import EncodedMediaCache, prompt_embeddings
from omnifuse.serving.sampling import SamplingParams, next_token
from omnifuse.serving.text import TextAssembler

log = logging.getLogger("omnifuse.serving")


class EngineUnavailable(RuntimeError):
    """The engine takes no new request now: it is draining for shutdown, or its queue is full."""

    def __init__(self, reason: str, draining: bool) -> None:
        super().__init__(reason)
        self.draining = draining


@dataclass
class EngineEvent:
    """What a request's sink receives: text deltas (streaming requests), then one `done` (or `error`) event.

    A request submitted with `stream=False` gets no deltas: its `done` event carries the whole text.
    """

    kind: str  # "text" | "done" | "error"
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: BaseException | None = None


@dataclass(eq=False)
class EngineRequest:
    input_ids: list[int]
    media: dict[str, list[torch.Tensor]]
    params: SamplingParams
    sink: Callable[[EngineEvent], None]
    stream: bool = True
    id: int = 0
    submitted: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    completion_tokens: int = 0
    cancelled: bool = False
    text: TextAssembler | None = None
    generator: torch.Generator | None = None

    def cancel(self) -> None:
        """Stop generating for this request (its client went away); the row leaves at the next step."""
        self.cancelled = True


class Engine:
    """Continuous batching over `model` (an OmniForConditionalGeneration), up to `max_batch` rows."""

    def __init__(
        self, model, tokenizer, max_batch: int = 16, max_queue: int = 256, media_cache_items: int = 256, metrics=None
    ) -> None:
        # A private copy: transformers flips flags on a tokenizer while encoding, so sharing one with the
        # request threads could make a decode here fail ("Already borrowed") mid-batch.
        self.model, self.tokenizer = model, copy.deepcopy(tokenizer)
        self.max_batch, self.max_queue = max_batch, max_queue
        self.media_cache = EncodedMediaCache(media_cache_items, metrics)
        self.metrics = metrics
        self.max_positions = _max_positions(model.config.text_config)
        self._pending: deque[EngineRequest] = deque()
        self._rows: list[EngineRequest] = []
        self._batch = RunningBatch()
        self._wake = threading.Condition()
        self._ids = itertools.count(1)
        self._stopping = False
        self.accepting = True
        self._thread = threading.Thread(target=self._run, name="omnifuse-engine", daemon=True)

    # -- public --
    def start(self) -> Engine:
        self._thread.start()
        return self

    def submit(
        self, input_ids: list[int], media: dict, params: SamplingParams, sink, stream: bool = True
    ) -> EngineRequest:
        """Queue a tokenized prompt; `sink(event)` is called from the engine thread for each event."""
        request = EngineRequest(list(input_ids), media, params, sink, stream)
        with self._wake:
            if not self.accepting:
                raise EngineUnavailable("the server is shutting down", draining=True)
            if len(self._pending) >= self.max_queue:
                raise EngineUnavailable(f"the queue is full ({self.max_queue} waiting requests)", draining=False)
            request.id = next(self._ids)
            self._pending.append(request)
            self._wake.notify()
        return request

    @property
    def queue_length(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return len(self._rows)

    def idle(self) -> bool:
        with self._wake:
            return not self._pending and not self._rows

    def drain(self) -> None:
        """Refuse new requests; those queued or running finish."""
        with self._wake:
            self.accepting = False

    def stop(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the engine thread --
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._pending and not self._rows and not self._stopping:
                        self._wake.wait()
                    if self._stopping:
                        self._fail_all(EngineUnavailable("the server stopped", draining=True))
                        return
                    free = self.max_batch - len(self._rows)
                    admitted = [self._pending.popleft() for _ in range(min(free, len(self._pending)))]
                self._step(admitted)
                if self.metrics is not None:
                    self.metrics.queue_length.set(len(self._pending))
                    self.metrics.running.set(len(self._rows))

    def _step(self, admitted: list[EngineRequest]) -> None:
        """Admit, then decode one token for every row; a failure fails those rows, never the engine thread."""
        try:
            if admitted:
                self._admit(admitted)
            if self._rows:
                self._decode_step()
        except Exception as err:  # noqa: BLE001
            log.exception("engine step failed; failing the running batch")
            for request in admitted:
                if request not in self._rows:
                    self._finish(request, error=err)  # a second terminal event is ignored by its reader
            self._fail_running(err)

    def _admit(self, requests: list[EngineRequest]) -> None:
        """Prefill the newly admitted requests, then add them to the running batch.

        Prompts of equal length are prefilled together; unequal ones are not padded against each other,
        since padded prefill can move logits by rounding and so change a greedy answer.
        """
        ready = []
        for request in requests:
            if request.cancelled:
                self._finish(request, "cancelled")
                continue
            try:
                ready.append(
                    (request, prompt_embeddings(self.model, request.input_ids, request.media, self.media_cache))
                )
            except Exception as err:  # noqa: BLE001 - a bad medium fails its own request only
                if not isinstance(err, OmnifuseInputError | ValueError):
                    log.exception("encoding a prompt failed")
                self._finish(request, error=err)
            request.media = {}  # encoded (or failed): the tensors are no longer needed
        by_length: dict[int, list] = {}
        for request, embeds in ready:
            by_length.setdefault(embeds.shape[1], []).append((request, embeds))
        for group in by_length.values():
            self._prefill_group(group)

    def _prefill_group(self, ready: list[tuple[EngineRequest, torch.Tensor]]) -> None:
        try:
            out, mask = self._prefill([embeds for _, embeds in ready])
        except Exception as err:  # noqa: BLE001
            log.exception("prefill failed")
            for request, _ in ready:
                self._finish(request, error=err)
            return
        logits = out.logits[:, -1]
        tokens = []
        for i, (request, _) in enumerate(ready):
            request.text = TextAssembler(self.tokenizer, request.params.stop, incremental=request.stream)
            request.generator = request.params.generator()
            tokens.append(next_token(logits[i], request.params, request.generator))
        start = len(self._rows)
        self._batch.add(out.past_key_values, mask, tokens)
        self._rows += [request for request, _ in ready]
        keep = [i for i, r in enumerate(self._rows) if i < start or self._accept_token(r, tokens[i - start])]
        self._batch.keep(keep)
        self._rows = [self._rows[i] for i in keep]

    def _prefill(self, embeds: list[torch.Tensor]):
        """One forward over left-padded prompt embeddings; returns the output and the attention mask."""
        width = max(e.shape[1] for e in embeds)
        batch = embeds[0].new_zeros((len(embeds), width, embeds[0].shape[-1]))
        mask = torch.zeros((len(embeds), width), dtype=torch.long)
        for i, e in enumerate(embeds):
            batch[i, width - e.shape[1] :] = e[0]
            mask[i, width - e.shape[1] :] = 1
        out = self.model(
            inputs_embeds=batch,
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            past_key_values=DynamicCache(config=self.model.config.text_config),
            use_cache=True,
            logits_to_keep=1,
        )
        return out, mask

    def _decode_step(self) -> None:
        ids, mask, positions = self._batch.step_inputs()
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self._batch.cache,
            use_cache=True,
        )
        logits = out.logits[:, -1]
        greedy = logits.argmax(dim=-1).tolist()  # one call for every greedy row
        tokens = [
            greedy[i] if r.params.temperature <= 0 else next_token(logits[i], r.params, r.generator)
            for i, r in enumerate(self._rows)
        ]
        self._batch.advance(mask, torch.tensor(tokens, dtype=torch.long))
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(self._rows))
        keep = [i for i, (r, t) in enumerate(zip(self._rows, tokens)) if self._accept_token(r, t)]
        self._batch.keep(keep)
        self._rows = [self._rows[i] for i in keep]

    def _accept_token(self, request: EngineRequest, token: int) -> bool:
        """Emit `token`'s text; True while the request goes on decoding."""
        if request.cancelled:
            self._finish(request, "cancelled")
            return False
        request.completion_tokens += 1
        if request.first_token_at is None:
            request.first_token_at = time.monotonic()
        if self.metrics is not None:
            self.metrics.completion_tokens.inc()
        if token in request.params.stop_token_ids:
            self._finish(request, "stop")
            return False
        delta, stopped = request.text.add(token)
        if delta and request.stream:
            request.sink(EngineEvent("text", delta))
        if stopped:
            self._finish(request, "stop")
            return False
        total = len(request.input_ids) + request.completion_tokens
        if request.completion_tokens >= request.params.max_tokens or total >= self.max_positions:
            self._finish(request, "length")
            return False
        return True

    def _finish(self, request: EngineRequest, reason: str | None = None, error: BaseException | None = None) -> None:
        text = ""
        if error is None and request.text is not None:
            tail = request.text.flush()
            if request.stream and tail:
                request.sink(EngineEvent("text", tail))
            text = "" if request.stream else request.text.text
        event = EngineEvent(
            "error" if error else "done",
            text,
            finish_reason=reason,
            error=error,
            prompt_tokens=len(request.input_ids),
            completion_tokens=request.completion_tokens,
        )
        if self.metrics is not None:
            self.metrics.observe_finished(request, event)
        request.sink(event)

    def _fail_running(self, err: BaseException) -> None:
        for request in self._rows:
            self._finish(request, error=err)
        self._rows, self._batch = [], RunningBatch()

    def _fail_all(self, err: BaseException) -> None:
        self._fail_running(err)
        while self._pending:
            self._finish(self._pending.popleft(), error=err)


def _max_positions(text_config) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(text_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2**31
