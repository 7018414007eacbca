"""ASGI middleware: a cap on request bodies, and an optional API key.

Example:
    >>> app = BodyLimit(ApiKeyCheck(app, key="secret"), max_bytes=16 * 2**20)
"""

from __future__ import annotations

import hmac
import json

from omnifuse.serving.protocol import APIError


async def send_error(send, error: APIError, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def body_too_large(max_bytes: int) -> APIError:
    return APIError(413, f"the request body is over {max_bytes} bytes (max_body_bytes)", code="request_too_large")


class BodyLimit:
    """Refuse a body whose Content-Length is over `max_bytes` with 413 before reading it (chunked bodies are
    counted while read, by `read_body`)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            declared = dict(scope.get("headers", [])).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                return await send_error(send, body_too_large(self.max_bytes), [(b"connection", b"close")])
        return await self.app(scope, receive, send)


async def read_body(request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it grows past `max_bytes`."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise body_too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


class ApiKeyCheck:
    """With a key set, every /v1/ route needs `Authorization: Bearer <key>` (compared in constant time)."""

    def __init__(self, app, key: str | None) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send):
        if self.key and scope["type"] == "http" and scope["path"].startswith("/v1/"):
            given = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), self.key.encode()):
                error = APIError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <key>'",
                    type="authentication_error",
                    code="invalid_api_key",
                )
                return await send_error(send, error, [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class StatusCounter:
    """Counts responses of the /v1/ routes by status code (`omnifuse_requests_total{status=...}`)."""

    def __init__(self, app, metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)

        async def counting_send(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(status=str(message["status"])).inc()
            await send(message)

        return await self.app(scope, receive, counting_send)
