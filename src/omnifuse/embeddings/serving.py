"""Server side of embeddings: `POST /v1/embeddings` (OpenAI format) and the chat request's `"rag"` extension.

`omnifuse serve --model DIR --rag-index INDEX` (or `--embeddings-model DIR2`) attaches a `RagService`:
- `/v1/embeddings` takes `{"input": "text" | ["text", ...] | [content part, ...]}` (content parts such
  as `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`; media pass through the
  same fetch policy as chat requests), answers `{"object": "list", "data": [{"object": "embedding",
  "index": i, "embedding": [...]}], "model": ..., "usage": {...}}`; `encoding_format: "base64"` too.
- a chat request with `"rag": {"k": 3}` (or `"rag": true`) retrieves the top-k items of the server's
  index for the last user message's text, puts them in front of that message as content parts with
  a numbered context block, and the response carries `"rag": {"sources": [{id, score, path, kind, text}]}`.
  Index files are the operator's: they are read directly, never through the request's fetch policy.

Example:
    >>> service = RagService.from_folders(index_dir="runs/idx")  # doctest: +SKIP
    >>> OmniServer.from_folder("runs/model", rag=service)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from omnifuse.embeddings.embed import Embedder
from omnifuse.embeddings.index import VectorIndex
from omnifuse.embeddings.rag import rag_context
from omnifuse.errors import OmnifuseInputError
from omnifuse.serving.middleware import read_body
from omnifuse.serving.protocol import APIError

MAX_INPUTS = 256
MAX_K = 20


class RagService:
    """An Embedder (for /v1/embeddings and queries) and optionally an open index (for `"rag"`)."""

    def __init__(self, embedder: Embedder, index: VectorIndex | None = None, name: str = "omnifuse-embeddings"):
        self.embedder, self.index, self.name = embedder, index, name
        self.lock = threading.Lock()  # one embedding pass at a time (tokenizer and index are not thread-safe)

    @classmethod
    def from_folders(cls, index_dir: str | None = None, embeddings_model: str | None = None) -> RagService:
        index = VectorIndex.open(index_dir) if index_dir else None
        model_dir = embeddings_model or (index.manifest["model"] if index else None)
        if model_dir is None:
            raise OmnifuseInputError("give --rag-index INDEX or --embeddings-model DIR")
        return cls(Embedder.from_folder(model_dir), index, name=str(model_dir))

    # -- /v1/embeddings --
    def embeddings(self, body: dict[str, Any], policy=None, limits=None, modality_for=None) -> dict[str, Any]:
        inputs = body.get("input")
        items = [inputs] if isinstance(inputs, str | dict) else inputs
        if not isinstance(items, list) or not items or len(items) > MAX_INPUTS:
            raise APIError(400, f"input: a string, a content part, or a list of 1-{MAX_INPUTS} of them", param="input")
        if any(not isinstance(it, str | dict) for it in items):
            raise APIError(400, "input: every item must be a string or a content part object", param="input")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise APIError(400, f"encoding_format: 'float' or 'base64', got {fmt!r}", param="encoding_format")
        parts = [it for it in items if isinstance(it, dict)]
        if parts and policy is not None:
            from omnifuse.serving.parts import convert_messages

            converted = convert_messages([{"role": "user", "content": parts}], modality_for, policy, limits)
            fetched = iter(converted[0]["content"])
            items = [it if isinstance(it, str) else next(fetched) for it in items]
        try:
            with self.lock:
                vectors = self.embedder.embed(items)
        except OmnifuseInputError as err:
            raise APIError(400, " ".join(str(err).split()), param="input", code="invalid_input") from err
        tokens = sum(len(self.embedder.text_tower.tokenizer(t).input_ids) for t in items if isinstance(t, str))
        data = [{"object": "embedding", "index": i, "embedding": encode_vector(v, fmt)} for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": body.get("model") or self.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip

    # -- the chat extension --
    def retrieve_for(self, request) -> list[dict[str, Any]] | None:
        """Hits for a chat request's `"rag"` extension, or None when it has none."""
        option = (request.model_extra or {}).get("rag")
        if option in (None, False):
            return None
        if self.index is None:
            raise APIError(400, "rag: this server has no index (start it with --rag-index)", param="rag")
        k = option.get("k", 3) if isinstance(option, dict) else 3
        if option is not True and not isinstance(option, dict) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise APIError(400, f'rag: true or {{"k": 1-{MAX_K}}}', param="rag")
        question = last_user_text(request.messages)
        if not question:
            raise APIError(400, "rag: the last user message has no text to search with", param="rag")
        with self.lock:
            vector = self.embedder.embed([question])[0]
            return self.index.search(vector, k=k)

    @staticmethod
    def augment(messages: list[dict], hits: list[dict], modalities: set[str]) -> list[dict]:
        """Retrieved media parts + the numbered context in front of the last user message's content."""
        index = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        last = messages[index]
        content = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        question = " ".join(p.get("text", "") for p in content if p.get("type") == "text").strip()
        prompt, media = rag_context(question, hits, modalities)
        parts = [{"type": kind, "path": path} for kind, path in media]
        others = [p for p in content if p.get("type") != "text"]
        updated = {**last, "content": [*parts, *others, {"type": "text", "text": prompt}]}
        return [*messages[:index], updated, *messages[index + 1 :]]

    def add_routes(self, app, state) -> None:
        async def embeddings(http: Request) -> JSONResponse:
            raw = await read_body(http, state.limits.max_body_bytes)
            try:
                body = json.loads(raw)
            except ValueError:
                raise APIError(400, "the body is not JSON") from None
            if not isinstance(body, dict):
                raise APIError(400, "the body must be a JSON object")
            result = await run_in_threadpool(
                self.embeddings, body, state.policy, state.limits, state.processor.modality_for
            )
            return JSONResponse(result)

        app.add_api_route("/v1/embeddings", embeddings, methods=["POST"])


def encode_vector(vector: np.ndarray, fmt: str):
    """OpenAI's encodings: a list of floats, or base64 of little-endian float32."""
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return [float(x) for x in vector]


def last_user_text(messages) -> str:
    for message in reversed(messages):
        data = message.model_dump(exclude_none=True) if hasattr(message, "model_dump") else message
        if data.get("role") != "user":
            continue
        content = data.get("content")
        if isinstance(content, str):
            return content.strip()
        return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "text").strip()
    return ""
