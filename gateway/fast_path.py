"""The hot endpoints served in front of FastAPI: ``POST /api/v1/predict`` and ``/api/v1/batch_predict``.

Why: at concurrency 64 the gateway, not Kafka, was the bottleneck, and a fifth of its CPU went
to Starlette's routing, request object and exception middleware around a handler that needs a
body and gives back JSON. These two paths are matched by a dict lookup on the raw ASGI scope;
everything else (models, drift, health, metrics, /v2, the 404/405 answers) is FastAPI's.

The answers are the same as FastAPI's handlers would give: the body limit (413) and JSON parse
(400) of :func:`gateway.app.read_json`, every :class:`~runtime.errors.RtmlError` rendered as
``{"error": {"code", "message"}}`` with its status, and an unexpected exception as a JSON 500
(logged) instead of a plain-text one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from gateway import v1
from gateway.lifecycle import GatewayRuntime
from gateway.tracing import serve_traced, traced_route
from runtime.errors import PayloadTooLarge, RtmlError

if TYPE_CHECKING:
    from runtime.tracing_otel import Tracing

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[GatewayRuntime, dict[str, Any], float], Awaitable[dict[str, Any]]]

JSON_HEADERS = [(b"content-type", b"application/json")]


class FastPath:
    def __init__(self, app: ASGIApp, runtime: GatewayRuntime, max_body_bytes: int) -> None:
        self.app = app
        """The FastAPI application that serves every other path (and the lifespan)."""
        self.runtime = runtime
        self._limit = max_body_bytes
        self._routes: dict[str, Handler] = {
            "/api/v1/predict": v1.predict,
            "/api/v1/batch_predict": v1.batch_predict,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:  # every endpoint, FastAPI's included, passes the key check here
                key = self.runtime.auth.check(scope["method"], scope["path"], scope["headers"])
                if key is not None and key.rate is not None:
                    await self.runtime.limiter.check(f"key:{key.name}", key.rate, f"API key '{key.name}'")
            except RtmlError as exc:
                await _answer(
                    send, exc.status, orjson.dumps(_error_body(exc, scope["path"])), exc.http_headers()
                )
                return
            if scope["method"] == "POST":
                handler = self._routes.get(scope["path"])
                if handler is not None:
                    await self._serve(handler, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            body = await read_body(scope, receive, self._limit)
            if body is None:
                return  # the client hung up before sending its body: nobody to answer
            status, content = (
                200,
                orjson.dumps(await handler(self.runtime, v1.parse_json_object(body), started)),
            )
        except RtmlError as exc:
            await _answer(send, exc.status, orjson.dumps(exc.to_dict()), exc.http_headers())
            return
        except Exception:
            log.exception("unexpected error", extra={"path": scope["path"]})
            internal = RtmlError("internal error; see the gateway log")
            status, content = internal.status, orjson.dumps(internal.to_dict())
        await _answer(send, status, content)


class TracedFastPath(FastPath):
    """:class:`FastPath` with a server span around each prediction request (``tracing.enabled``;
    chosen once, by :func:`gateway.app.create_app`: with tracing off this class is never used)."""

    def __init__(self, app: ASGIApp, runtime: GatewayRuntime, max_body_bytes: int, tracing: Tracing) -> None:
        super().__init__(app, runtime, max_body_bytes)
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = traced_route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if name is None:
            await super().__call__(scope, receive, send)
        else:
            await serve_traced(self.tracing, name, scope, receive, send, super().__call__)


async def _answer(send: Send, status: int, content: bytes, extra: dict[str, str] | None = None) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _error_body(error: RtmlError, path: str) -> dict[str, Any]:
    """rtml's error shape, or the Open Inference Protocol's under /v2."""
    return {"error": error.message} if path.startswith("/v2") else error.to_dict()


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, refused (413) as soon as it is known to exceed ``limit``; None if the
    client disconnected first."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise PayloadTooLarge(f"request body is {value.decode()} bytes; the limit is {limit}")
            break
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    if not message.get("more_body"):
        return body
    chunks = bytearray(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks += message.get("body", b"")
        if len(chunks) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return bytes(chunks)
