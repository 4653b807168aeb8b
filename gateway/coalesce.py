"""Requests for one model that arrive in one event-loop iteration leave in one Kafka message.

Why: a Kafka message costs the same fixed work whatever it carries: a produce call and a
delivery report here, a log append and a fetch response on the broker, a decode and a wake-up
on the worker. Under load many requests for a model are accepted in the same loop iteration
(uvloop runs every ready connection's callbacks together); sending them as one
PredictRequestBatch pays that fixed cost once. Alone, a request still leaves in the same
iteration it arrived in: the flush is a ``call_soon``, so coalescing never waits for company
(unlike a linger, it adds no latency at concurrency 1).

Under load that is not enough: requests from many independent callers (an open-loop client)
arrive spread out and rarely share an iteration, so every request became its own message just
when CPU was scarce. With ``gateway.coalesce_delay_us`` > 0, a message opened while other
requests are already waiting for replies is flushed that much later instead; an idle gateway
still sends at once.

Each request is encoded once, when it is added, so the size of a message is known before a
request joins it; a message never grows past ``max_message_bytes`` or ``max_requests``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from confluent_kafka import KafkaError, Message

from runtime.errors import RtmlError, Unavailable
from runtime.kafka import KafkaProducer
from schemas.messages import MAX_REQUESTS_PER_BATCH
from schemas.wire import REQUEST_BATCH_OVERHEAD, join_request_batch

Fail = Callable[[list[bytes], RtmlError], None]
"""Fails the waiters of these correlation ids (called on the event loop)."""
Delivered = Callable[[list[bytes]], None]
"""These correlation ids are in the topic (called on the producer's poll thread)."""


class _Open:
    """The message being filled for one model."""

    __slots__ = ("correlations", "parts", "size", "trace")

    def __init__(self) -> None:
        self.correlations: list[bytes] = []
        self.parts: list[bytes] = []
        self.size = REQUEST_BATCH_OVERHEAD
        self.trace: list[tuple[str, str | bytes | None]] | None = None
        """The W3C headers of its first request (tracing on); sent only if it stays alone."""


class RequestCoalescer:
    def __init__(
        self,
        producer: KafkaProducer,
        topic_of: Callable[[str], str],
        delivered: Delivered,
        fail: Fail,
        max_message_bytes: int,
        max_requests: int = MAX_REQUESTS_PER_BATCH,
        busy_delay_s: float = 0.0,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._producer = producer
        self._topic_of = topic_of
        self._delivered = delivered
        self._fail = fail
        self._max_bytes = max_message_bytes
        self._max_requests = min(max_requests, MAX_REQUESTS_PER_BATCH)
        self._busy_delay_s = busy_delay_s
        self._busy = busy
        self._open: dict[str, _Open] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.messages_sent = 0
        self.requests_sent = 0

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(
        self,
        model: str,
        correlation: bytes,
        encoded_request: bytes,
        trace_headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Queue one encoded PredictRequest; it is produced before the loop next waits for I/O.

        ``trace_headers``: the request's W3C context as Kafka headers (tracing on). Each request
        carries its own context in its ``traceparent`` field, which survives coalescing; the
        message also gets the headers when it carries that request alone, so tools that read
        Kafka headers see the trace too (a message of several requests belongs to no one trace)."""
        if not self._open:
            assert self._loop is not None, "bind_loop first"
            if self._busy_delay_s > 0 and self._busy():
                # Under load, arrivals spread evenly (an open-loop client, many independent
                # callers) rarely share a loop iteration; waiting a little for company keeps
                # the per-message cost amortised. Idle (c1) requests never wait.
                self._loop.call_later(self._busy_delay_s, self.flush)
            else:
                self._loop.call_soon(self.flush)
        pending = self._open.get(model)
        if pending is not None and (
            pending.size + len(encoded_request) + 1 > self._max_bytes
            or len(pending.parts) >= self._max_requests
        ):
            self._send(model, pending)
            pending = None
        if pending is None:
            pending = self._open[model] = _Open()
            pending.trace = trace_headers
        pending.correlations.append(correlation)
        pending.parts.append(encoded_request)
        pending.size += len(encoded_request) + 1

    def flush(self) -> None:
        pending, self._open = self._open, {}
        for model, message in pending.items():
            self._send(model, message)

    def _send(self, model: str, message: _Open) -> None:
        correlations = message.correlations
        try:
            self._producer.produce(
                self._topic_of(model),
                join_request_batch(message.parts),
                None,  # no key: spread over the model's partitions
                on_delivery=self._on_delivery(correlations),
                max_wait_s=0,
                headers=message.trace if len(correlations) == 1 else None,
            )
        except BufferError as exc:  # QueueFull included: never waited for on the event loop
            self._fail(
                correlations, Unavailable(f"the gateway's Kafka queue is full ({exc}); try again later")
            )
            return
        except Exception as exc:  # refused by librdkafka (e.g. larger than message.max.bytes)
            self._fail(correlations, Unavailable(f"Kafka refused the request: {exc}"))
            return
        self.messages_sent += 1
        self.requests_sent += len(correlations)

    def _on_delivery(self, correlations: list[bytes]) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, _message: Message) -> None:
            # Runs on the producer's poll thread.
            if error is None:
                self._delivered(correlations)
                return
            loop = self._loop
            if loop is not None and not loop.is_closed():
                failure = Unavailable(f"could not publish to Kafka: {error.str()}")
                loop.call_soon_threadsafe(self._fail, correlations, failure)

        return report
