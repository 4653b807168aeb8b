"""Worker stage: a span per request of a consumed batch (``tracing.enabled`` only).

A request that came with a W3C trace context (its own ``traceparent`` field, set by the gateway on
every request it coalesces, else its message's ``traceparent`` header, as a direct producer sets
it) gets a CONSUMER span, child of that context, from the batch's arrival until its replies are
sent and its log records handed to the producer; its records carry the span's trace and span
ids. A request with no context is served untraced (its records carry none). A request that is
dead-lettered gets its span too, marked as an error with the reason.

The pipeline holds None instead of a :class:`BatchSpans` when tracing is off, and then makes
not one call here.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from confluent_kafka import Message

from runtime.tracing import message_context
from schemas.messages import PredictRequest
from workers.codec import DecodedRequest, Rejected

if TYPE_CHECKING:
    from runtime.tracing_otel import Span, Tracing


class BatchSpans:
    def __init__(self, tracing: Tracing, model: str) -> None:
        self._tracing = tracing
        self._model = model
        self._began_ns = 0
        self._open: dict[tuple[int, int], Span] = {}
        """Spans of the batch being processed, by (message, request) identity."""

    def begin(self) -> None:
        """A batch arrived: its requests' spans start now."""
        self._began_ns = time.time_ns()

    def traced(self, outcome: DecodedRequest) -> DecodedRequest:
        """``outcome`` with the ids of its span (unchanged when it came with no context)."""
        span = self._span(outcome.message, outcome.request)
        if span is None:
            return outcome
        span.set_attributes({"rtml.version": outcome.runtime.version, "rtml.route": outcome.route})
        return replace(outcome, trace=self._tracing.ids(span))

    def rejected(self, rejected: Rejected) -> None:
        """A dead-lettered request (or message): its span, if it has a context, is an error."""
        span = self._span(rejected.message, rejected.request)
        if span is not None:
            span.set_attribute("rtml.dead_letter.reason", rejected.reason)
            self._tracing.fail(span, rejected.detail)

    def end(self) -> None:
        """The batch's replies are sent and its log records queued: end every span."""
        for span in self._open.values():
            span.end()
        self._open.clear()

    def _span(self, message: Message, request: PredictRequest | None) -> Span | None:
        key = (id(message), id(request))
        span = self._open.get(key)
        if span is not None:
            return span
        parent = (
            message_context(request.traceparent, request.tracestate, message.headers())
            if request is not None
            else message_context(None, None, message.headers())
        )
        if parent is None:
            return None
        topic = str(message.topic())
        attributes: dict[str, str | int | bool | float] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(message.partition()),
            "messaging.kafka.offset": int(message.offset() or 0),
            "rtml.model": self._model,
        }
        if request is not None:
            attributes["rtml.request_id"] = request.request_id
            attributes["rtml.rows"] = len(request.features)
            attributes["rtml.source"] = request.source
        span = self._tracing.consumer_span(f"process {topic}", parent, attributes, self._began_ns)
        self._open[key] = span
        return span
