"""The gateway's spans (``tracing.enabled`` only): a server span per HTTP prediction request and
a producer span per request published.

With tracing on, :func:`gateway.app.create_app` serves through
:class:`~gateway.fast_path.TracedFastPath` instead of :class:`~gateway.fast_path.FastPath`, and
:meth:`gateway.service.PredictionService.trace_with` gives the service a :class:`SendSpans`: the
choice is made once, at start-up, so with tracing off not one instruction here runs per request.

The server span is the caller's child when the request carries a W3C ``traceparent`` header, else
the root of a new trace; it is the current span while the request is served, so the producer
span is its child, and the producer span's context is what travels in the Kafka message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from runtime.errors import RtmlError
from runtime.tracing import http_context

if TYPE_CHECKING:
    from runtime.tracing_otel import Span, Tracing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREDICT_ROUTES = {
    "/api/v1/predict": "POST /api/v1/predict",
    "/api/v1/batch_predict": "POST /api/v1/batch_predict",
}


def traced_route(method: str, path: str) -> str | None:
    """The span name (``METHOD route``, low cardinality) of a request that gets a server span:
    the v1 prediction endpoints and Open Inference Protocol infer calls; None for the rest."""
    if method != "POST":
        return None
    name = PREDICT_ROUTES.get(path)
    if name is not None:
        return name
    parts = path.split("/")  # "", "v2", "models", name, ["versions", v,] "infer"
    if parts[:3] != ["", "v2", "models"] or parts[-1] != "infer":
        return None
    if len(parts) == 5:
        return "POST /v2/models/{name}/infer"
    if len(parts) == 7 and parts[4] == "versions":
        return "POST /v2/models/{name}/versions/{version}/infer"
    return None


async def serve_traced(
    tracing: Tracing, name: str, scope: Scope, receive: Receive, send: Send, app: ASGIApp
) -> None:
    """Serve one request with ``app`` inside a SERVER span named ``name``."""
    route = name.split(" ", 1)[1]
    span = tracing.server_span(
        name,
        http_context(scope["headers"]),
        {"http.request.method": scope["method"], "url.path": scope["path"], "http.route": route},
    )
    status = RtmlError.status  # no answer started: the server's own failure

    async def send_watched(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        with tracing.current(span):
            await app(scope, receive, send_watched)
    finally:
        span.set_attribute("http.response.status_code", status)
        if status >= RtmlError.status:  # 5xx
            tracing.fail(span, f"HTTP {status}")
        span.end()


class SendSpans:
    """The producer span of each request in flight to Kafka, by correlation id: started when the
    request is published, ended by its message's delivery report (on the producer's poll thread),
    with an error if the message was refused or never reported."""

    def __init__(self, tracing: Tracing, topic_of: Callable[[str], str]) -> None:
        self._tracing = tracing
        self._topic_of = topic_of
        self._open: dict[bytes, Span] = {}

    def start(
        self, correlation: bytes, request_id: str, model: str, version: str, rows: int
    ) -> tuple[str, str | None]:
        """A PRODUCER span, child of the current (server) span; returns its W3C traceparent and
        tracestate, for the request's message."""
        topic = self._topic_of(model)
        span = self._tracing.producer_span(
            f"send {topic}",
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                "messaging.message.conversation_id": correlation.decode(),
                "rtml.request_id": request_id,
                "rtml.model": model,
                "rtml.version": version,
                "rtml.rows": rows,
            },
        )
        self._open[correlation] = span
        return self._tracing.traceparent(span)

    def delivered(self, correlations: list[bytes]) -> None:
        self._end(correlations, None)

    def failed(self, correlations: list[bytes], error: str) -> None:
        self._end(correlations, error)

    def finish(self, correlation: bytes, reply: asyncio.Future[Any]) -> None:
        """The request is over: a span still open had no delivery report yet. A reply means its
        message was delivered (the report is only late); without one, it is an error."""
        if correlation not in self._open:
            return
        replied = reply.done() and not reply.cancelled() and reply.exception() is None
        self._end([correlation], None if replied else "no delivery report from Kafka")

    def _end(self, correlations: list[bytes], error: str | None) -> None:
        for correlation in correlations:
            span = self._open.pop(correlation, None)  # atomic: each span is ended once
            if span is None:
                continue
            if error is not None:
                self._tracing.fail(span, error)
            span.end()
