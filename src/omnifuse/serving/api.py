"""The HTTP API (FastAPI): OpenAI's chat completions (plain and SSE), models, health, metrics and the web page.

Example:
    >>> app = create_app(ServingState(engine, processor, "my-model"))
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from omnifuse.errors import OmnifuseInputError
from omnifuse.serving.engine import Engine, EngineEvent, EngineUnavailable
from omnifuse.serving.fetch import FetchPolicy
from omnifuse.serving.limits import ServerLimits
from omnifuse.serving.metrics import ServingMetrics
from omnifuse.serving.middleware import ApiKeyCheck, BodyLimit, StatusCounter, read_body
from omnifuse.serving.parts import convert_messages
from omnifuse.serving.protocol import (
    APIError,
    ChatCompletionRequest,
    chunk_line,
    completion_body,
    completion_id,
    parse_request,
    usage,
)
from omnifuse.serving.sampling import SamplingParams

log = logging.getLogger("omnifuse.serving")


@dataclass
class ServingState:
    """Everything the routes share: the engine, the processor, limits, fetch policy, metrics, drain state."""

    engine: Engine
    processor: object
    model_name: str
    limits: ServerLimits = field(default_factory=ServerLimits)
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    metrics: ServingMetrics = field(default_factory=ServingMetrics)
    default_max_tokens: int = 256
    created: int = field(default_factory=lambda: int(time.time()))
    draining: bool = False
    inflight: int = 0
    # transformers' fast tokenizers flip a backend flag while encoding: one encoder at a time.
    encode_lock: threading.Lock = field(default_factory=threading.Lock)
    rag: Any = None  # an omnifuse.embeddings.serving.RagService: /v1/embeddings and the "rag" extension


def error_for_event(event: EngineEvent) -> APIError:
    err = event.error
    if isinstance(err, EngineUnavailable):
        return APIError(503, str(err), type="server_error", code="server_unavailable")
    if isinstance(err, OmnifuseInputError | ValueError):
        return APIError(400, " ".join(str(err).split()), param="messages", code="invalid_input")
    return APIError(500, "internal error while generating; see the server log", type="server_error")


def prepare_prompt(state: ServingState, request: ChatCompletionRequest, hits: list | None = None):
    """Fetch and decode the media, render and tokenize the prompt (runs in a worker thread)."""
    raw = [m.model_dump(exclude_none=True) for m in request.messages]
    messages = convert_messages(raw, state.processor.modality_for, state.policy, state.limits)
    if hits is not None:  # retrieved items (the operator's index files) join after the request's own checks
        messages = state.rag.augment(messages, hits, set(state.processor.specs))
    try:
        with state.encode_lock:
            return state.processor.encode_conversation(messages, add_generation_prompt=True)
    except (OmnifuseInputError, ValueError) as err:
        raise APIError(400, " ".join(str(err).split()), param="messages", code="invalid_media") from err


def sampling_params(state: ServingState, request: ChatCompletionRequest, prompt_tokens: int) -> SamplingParams:
    room = state.engine.max_positions - prompt_tokens
    asked = request.max_completion_tokens or request.max_tokens
    if asked is not None and asked > state.limits.max_tokens:
        raise APIError(
            400,
            f"max_tokens: {asked} is over this server's limit of {state.limits.max_tokens}",
            param="max_tokens",
            code="invalid_value",
        )
    if room < 1 or (asked is not None and asked > room):
        raise APIError(
            400,
            f"the prompt has {prompt_tokens} tokens; with max_tokens={asked} it exceeds the "
            f"model's context of {state.engine.max_positions} tokens",
            param="messages",
            code="context_length_exceeded",
        )
    tokenizer = state.processor.tokenizer
    return SamplingParams(
        max_tokens=asked or min(state.default_max_tokens, room),
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_strings(),
        seed=request.seed,
        stop_token_ids=(tokenizer.eos_token_id,) if tokenizer.eos_token_id is not None else (),
    )


def _submit(state: ServingState, sample, params: SamplingParams, stream: bool):
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[EngineEvent] = asyncio.Queue()

    def sink(event: EngineEvent) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop closed: the client is gone
            loop.call_soon_threadsafe(queue.put_nowait, event)

    try:
        handle = state.engine.submit(sample.input_ids, sample.media, params, sink, stream=stream)
    except EngineUnavailable as err:
        status = 503 if err.draining else 429
        raise APIError(
            status,
            str(err),
            type="server_error" if err.draining else "rate_limit_error",
            code="server_shutting_down" if err.draining else "queue_full",
        ) from err
    return handle, queue


async def _collect(queue: asyncio.Queue) -> tuple[str, EngineEvent]:
    pieces = []
    while True:
        event = await queue.get()
        if event.kind == "text":
            pieces.append(event.text)
        elif event.kind == "error":
            raise error_for_event(event)
        else:
            return "".join(pieces) + event.text, event


async def _stream(state: ServingState, handle, queue, cid: str, include_usage: bool):
    done = False
    try:
        yield chunk_line(cid, state.model_name, {"role": "assistant", "content": ""})
        while True:
            event = await queue.get()
            if event.kind == "text":
                yield chunk_line(cid, state.model_name, {"content": event.text})
                continue
            done = True
            if event.kind == "error":
                yield f"data: {json.dumps(error_for_event(event).body())}\n\n"
                break
            yield chunk_line(cid, state.model_name, {}, event.finish_reason)
            if include_usage:
                tokens = usage(event.prompt_tokens, event.completion_tokens)
                yield chunk_line(cid, state.model_name, {}, usage_=tokens, choices=False)
            yield "data: [DONE]\n\n"
            break
    finally:
        if not done:
            handle.cancel()  # the client went away mid-answer
        state.inflight -= 1


async def chat_completions(http: Request) -> Response:
    state: ServingState = http.app.state.serving
    if state.draining:
        raise APIError(503, "the server is shutting down", type="server_error", code="server_shutting_down")
    state.inflight += 1
    streaming = False
    try:
        request = parse_request(await read_body(http, state.limits.max_body_bytes))
        if request.model not in (None, state.model_name):
            raise APIError(
                404,
                f"model {request.model!r} is not served here; this server serves {state.model_name!r}",
                param="model",
                code="model_not_found",
            )
        hits = await run_in_threadpool(state.rag.retrieve_for, request) if state.rag is not None else None
        sample = await run_in_threadpool(prepare_prompt, state, request, hits)
        params = sampling_params(state, request, len(sample.input_ids))
        handle, queue = _submit(state, sample, params, request.stream)
        cid = completion_id()
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            streaming = True
            return StreamingResponse(
                _stream(state, handle, queue, cid, include_usage),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        try:
            text, event = await _collect(queue)
        finally:
            handle.cancel()  # no-op once finished; frees the row if this handler was cancelled
        body = completion_body(
            cid, state.model_name, text, event.finish_reason, event.prompt_tokens, event.completion_tokens
        )
        return JSONResponse(body | ({"rag": {"sources": hits}} if hits is not None else {}))
    finally:
        if not streaming:
            state.inflight -= 1


def _index_page() -> str:
    return resources.files("omnifuse.serving").joinpath("web/index.html").read_text(encoding="utf-8")


def create_app(state: ServingState, api_key: str | None = None):
    """The ASGI app: routes, OpenAI-style errors, the API key check and the body cap around them."""
    app = FastAPI(title="omnifuse", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serving = state

    @app.exception_handler(APIError)
    async def api_error(_: Request, err: APIError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, err: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=err)
        body = APIError(500, "internal server error; see the server log", type="server_error").body()
        return JSONResponse(body, status_code=500)

    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    if state.rag is not None:
        state.rag.add_routes(app, state)  # /v1/embeddings

    @app.get("/v1/models")
    async def models() -> dict:
        card = {"id": state.model_name, "object": "model", "created": state.created, "owned_by": "omnifuse"}
        return {"object": "list", "data": [card]}

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok", "running": state.engine.running, "queued": state.engine.queue_length})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(_index_page())

    return StatusCounter(BodyLimit(ApiKeyCheck(app, api_key), state.limits.max_body_bytes), state.metrics)
