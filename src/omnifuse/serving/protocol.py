"""The OpenAI chat-completions wire format: the request model, response bodies, SSE chunks and error bodies.

Example:
    >>> request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    >>> request.generation_limit(default=64)
    64
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

Number = StrictInt | StrictFloat


class APIError(Exception):
    """An error returned as OpenAI's body `{"error": {"message", "type", "param", "code"}}` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """The fields omnifuse honours; other OpenAI fields are accepted and ignored, wrong types are refused."""

    model_config = ConfigDict(extra="allow")
    model: StrictStr | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: Number = Field(default=1.0, ge=0, le=2)
    top_p: Number = Field(default=1.0, gt=0, le=1)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    n: StrictInt = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

    def generation_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(s for s in stops if s)


def parse_request(body: bytes) -> ChatCompletionRequest:
    """Bytes of a POST body -> a validated request, or an APIError naming the bad field."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise APIError(400, f"the request body is not valid JSON: {err}", code="invalid_json") from err
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    try:
        request = ChatCompletionRequest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise APIError(400, f"{param}: {first['msg']}", param=param, code="invalid_value") from err
    if request.n != 1:
        raise APIError(400, f"n: only n=1 is supported, got {request.n}", param="n", code="invalid_value")
    return request


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(cid: str, model: str, text: str, finish_reason: str, prompt: int, completion: int) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt, completion),
    }


def chunk_line(
    cid: str,
    model: str,
    delta: dict,
    finish_reason: str | None = None,
    usage_: dict | None = None,
    choices: bool = True,
) -> str:
    """One SSE `data:` line of a streamed completion."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}] if choices else [],
    }
    if usage_ is not None:
        body["usage"] = usage_
    return f"data: {json.dumps(body)}\n\n"
