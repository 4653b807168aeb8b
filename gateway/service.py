"""The gateway's one service object: route, read the cache, publish, await the reply.

Called by every transport (the REST API today; the Open Inference Protocol and
others later), so behaviour and errors are identical whichever way a request
arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, Message

from gateway import metrics
from gateway.cache import GatewayCache
from gateway.coalesce import RequestCoalescer
from gateway.hit_rate import HitRate
from gateway.limits import RateLimiter
from gateway.model_table import ModelTable
from gateway.replies import Reply, ReplyRouter
from gateway.tracing import SendSpans
from runtime.cache_keys import cache_key, decode_value, version_tag
from runtime.clock import now_ms
from runtime.errors import (
    DeadlineExceeded,
    InvalidInput,
    PayloadTooLarge,
    RequestIdInUse,
    RtmlError,
    Unavailable,
    from_code,
)
from runtime.features import check_row, check_rows
from runtime.ids import new_id
from runtime.kafka import PolledProducer
from runtime.settings import Settings
from runtime.tracing import kafka_headers
from schemas.control import Route
from schemas.messages import Label
from schemas.model_metadata import ModelMetadata
from schemas.wire import REQUEST_BATCH_OVERHEAD, encode_prediction_record, encode_request

if TYPE_CHECKING:
    from runtime.tracing_otel import Tracing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The answer to one request of one or more rows."""

    request_id: str
    model: str
    version: str
    predictions: list[Label]
    probabilities: list[list[float]] | None
    """Class probabilities (classification) or distances to each centre (clustering)."""
    from_cache: bool
    task: str = "classification"
    route: Route = "default"
    """Why this version answered: default, split (an A/B arm), pinned (the request named it)."""


BUSY_IN_FLIGHT = 8
"""Requests awaiting replies from which the gateway counts as under load and lets new requests
wait ``gateway.coalesce_delay_us`` for company: a few concurrent callers never wait."""


class PredictionService:
    def __init__(
        self,
        settings: Settings,
        models: ModelTable,
        producer: PolledProducer,
        replies: ReplyRouter,
        cache: GatewayCache,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.models = models
        self._limiter = limiter
        self._model_rates = settings.gateway.model_rates
        self._kafka = settings.kafka
        self._gateway = settings.gateway
        self._producer = producer
        self._replies = replies
        self._cache = cache
        self._key_precision = settings.redis.key_precision
        self._hits = HitRate()
        """Recent single-row hit ratio: whether a lookup here pays while under load."""
        self._undelivered: set[bytes] = set()
        self._request_ids: set[str] = set()
        """Callers' request ids in flight (409 for a second one at once)."""
        self._outgoing = self._coalescer(delivered=self._undelivered.difference_update)
        self._tracing: Tracing | None = None
        """None unless :meth:`trace_with` turned tracing on at start-up."""
        self._sends: SendSpans | None = None
        """The producer spans of requests in flight to Kafka (tracing on)."""

    def _coalescer(self, delivered: Callable[[list[bytes]], None]) -> RequestCoalescer:
        return RequestCoalescer(
            self._producer,
            self._kafka.request_topic,
            delivered=delivered,
            fail=self._fail,
            max_message_bytes=self._gateway.max_body_bytes,
            busy_delay_s=self._gateway.coalesce_delay_us / 1_000_000,
            busy=self._busy,
        )

    def trace_with(self, tracing: Tracing) -> None:
        """Turn tracing on (at start-up, before :meth:`bind_loop`): each request published gets a
        producer span, child of the current (server) span, whose W3C context travels in the
        request's ``traceparent`` field (and the message's header when it goes alone)."""
        self._tracing = tracing
        self._sends = sends = SendSpans(tracing, self._kafka.request_topic)

        def delivered(correlations: list[bytes]) -> None:  # the producer's poll thread
            self._undelivered.difference_update(correlations)
            sends.delivered(correlations)

        self._outgoing = self._coalescer(delivered=delivered)

    def _busy(self) -> bool:
        """Under load: enough requests await replies that a new one soon has company."""
        return self._replies.in_flight >= BUSY_IN_FLIGHT

    @property
    def kafka_up(self) -> bool:
        return self._producer.health.up

    def timeout_s(self, timeout_ms: int | None) -> float:
        if timeout_ms is None:
            return self._gateway.default_timeout_ms / 1000
        if not 1 <= timeout_ms <= self._gateway.max_timeout_ms:
            raise InvalidInput(f"timeout_ms is {timeout_ms}; expected 1..{self._gateway.max_timeout_ms}")
        return timeout_ms / 1000

    async def predict(
        self,
        model: str,
        version: str | None,
        rows: Sequence[object],
        *,
        use_cache: bool = True,
        timeout_ms: int | None = None,
        request_id: str | None = None,
        field: str = "features",
        routing_key: str | None = None,
    ) -> Prediction:
        # The gateway routes (default, A/B arm or pinned) so that it reads the right version's cache.
        metadata, routed = self.models.route(model, version, routing_key)
        rate = self._model_rates.get(model)
        if rate is not None and self._limiter is not None:
            await self._limiter.check(f"model:{model}", rate, f"model '{model}'")
        if field == "features":  # a single row: name its values features[i], not features[0][i]
            check_row(rows[0], metadata.n_features, model, metadata.version, field)
        else:
            check_rows(rows, metadata.n_features, model, metadata.version, field)
        timeout_s = self.timeout_s(timeout_ms)
        features: Sequence[Sequence[float]] = rows  # type: ignore[assignment]  # checked above
        request_id = request_id or new_id()
        if self._tracing is not None:  # what the current (server) span served
            served: dict[str, str | int] = {"rtml.request_id": request_id, "rtml.model": model}
            self._tracing.annotate({**served, "rtml.version": metadata.version, "rtml.rows": len(features)})
        worker_reads_cache = use_cache
        single_row_cached = use_cache and len(features) == 1 and self._cache.available
        if single_row_cached:
            if self._hits.worth_looking_up(self._busy()):
                row = features[0]
                hit = await self._from_cache(request_id, model, metadata, row, routed.route, timeout_s)
                self._hits.observe(hit is not None)
                if hit is not None:
                    return hit
                worker_reads_cache = False  # just looked it up: a second read would miss as well
            else:  # under load and rows rarely repeat: the worker reads the cache (gateway/hit_rate.py)
                metrics.CACHE_SERIES.labels(model, metadata.version, "skipped").inc()
        result = await self._round_trip(
            request_id,
            model,
            metadata.version,
            features,
            worker_reads_cache,
            timeout_s,
            routing=(routing_key, routed.route),
        )
        if single_row_cached and worker_reads_cache:
            self._hits.observe(result.from_cache)
        return replace(result, task=metadata.task, route=routed.route)

    async def _from_cache(
        self,
        request_id: str,
        model: str,
        metadata: ModelMetadata,
        row: Sequence[float],
        route: Route,
        timeout_s: float,
    ) -> Prediction | None:
        version, task = metadata.version, metadata.task
        tag = version_tag(version, metadata.onnx_sha256)
        decimals = self._key_precision.get(model)
        raw = await self._cache.get(cache_key(self._cache.prefix, model, tag, row, decimals))
        cached = decode_value(raw) if raw is not None else None
        if cached is None:
            metrics.CACHE_SERIES.labels(model, version, "miss" if raw is None else "corrupt").inc()
            return None
        metrics.CACHE_SERIES.labels(model, version, "hit").inc()
        metrics.SERVED.add(model, version, route, 1)
        label, probabilities = cached
        logged = self._log_cache_hit(request_id, model, version, row, label, probabilities, task, route)
        if logged is not None and not await _within(logged, timeout_s):
            metrics.CACHE_SERIES.labels(model, version, "unlogged").inc()
            return None  # not answered from a record that may be lost: the worker path logs durably
        scores = [probabilities] if probabilities else None
        return Prediction(request_id, model, version, [label], scores, True, task, route)

    def _log_cache_hit(
        self,
        request_id: str,
        model: str,
        version: str,
        row: Sequence[float],
        label: Label,
        probabilities: list[float] | None,
        task: str,
        route: Route,
    ) -> asyncio.Future[bool] | None:
        """Produce the hit's log record; with ``durable_hit_log`` a future of its acknowledgement
        (None otherwise: the callback would wake the event loop once per hit for nothing)."""
        at_ms = now_ms()
        record = encode_prediction_record(
            request_id=request_id,
            row=0,
            model=model,
            version=version,
            features=row,
            prediction=label,
            probabilities=probabilities,
            from_cache=True,
            source="http",
            predicted_at_ms=at_ms,
            sent_at_ms=at_ms,
            served_by="gateway",
            top_probability=task == "classification",
            route=route,
            trace=self._tracing.current_ids() if self._tracing is not None else None,
        )
        if not self._gateway.durable_hit_log:
            try:
                self._producer.produce(
                    self._kafka.predictions_topic, record, request_id.encode(), on_delivery=_count_log_error
                )
            except Exception:  # BufferError or a closed producer: the answer still goes out
                metrics.LOG_ERRORS.inc()
            return None
        logged: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        loop = logged.get_loop()

        def delivered(error: KafkaError | None, _message: Message) -> None:  # the producer's thread
            _count_log_error(error, _message)
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, logged, error is None)

        try:
            self._producer.produce(
                self._kafka.predictions_topic, record, request_id.encode(), on_delivery=delivered
            )
        except Exception:
            metrics.LOG_ERRORS.inc()
            logged.set_result(False)
        return logged

    async def _round_trip(
        self,
        request_id: str,
        model: str,
        version: str,
        features: Sequence[Sequence[float]],
        use_cache: bool,
        timeout_s: float,
        routing: tuple[str | None, Route] = (None, "default"),
    ) -> Prediction:
        if not self._producer.health.up:
            metrics.UNAVAILABLE.labels(model).inc()
            raise Unavailable(f"Kafka is unreachable ({self._producer.health.last_error}); try again later")
        if self._replies.in_flight >= self._gateway.max_in_flight:
            metrics.UNAVAILABLE.labels(model).inc()
            raise Unavailable(
                f"the gateway is at its limit of {self._gateway.max_in_flight} requests in flight; "
                "try again shortly",
                retry_after_s=1,
            )
        if request_id in self._request_ids:
            raise RequestIdInUse(f"request_id '{request_id}' is already in flight on this gateway")
        # Replies are matched by an id this gateway makes, never by the caller's request_id: a late
        # reply to an earlier request with the same id (after a 504) cannot answer a later one.
        correlation = new_id().encode()
        future = self._replies.register(correlation)
        self._request_ids.add(request_id)
        # The deadline is a plain timer that fails the future: asyncio.timeout() costs twice as
        # much per request (a Timeout object, a reschedule and an uncancel) for the same effect.
        deadline = future.get_loop().call_later(timeout_s, _expire, future)
        try:
            self._publish(correlation, request_id, model, version, features, use_cache, timeout_s, routing)
            reply = await future
        except TimeoutError:
            raise self._timeout_error(correlation, model, timeout_s) from None
        finally:
            deadline.cancel()
            self._replies.discard(correlation)
            self._undelivered.discard(correlation)
            self._request_ids.discard(request_id)
            if self._sends is not None:
                self._sends.finish(correlation, future)
        return _decode_reply(reply, request_id, model, version, len(features))

    def _publish(
        self,
        correlation: bytes,
        request_id: str,
        model: str,
        version: str,
        features: Sequence[Sequence[float]],
        use_cache: bool,
        timeout_s: float,
        routing: tuple[str | None, Route],
    ) -> None:
        sent = now_ms()
        trace = None
        if self._sends is not None:  # tracing on
            trace = self._sends.start(correlation, request_id, model, version, len(features))
        envelope = encode_request(
            request_id=request_id,
            model=model,
            version=version,
            features=features,
            reply_to=self._replies.topic,
            deadline_ms=sent + int(timeout_s * 1000),
            use_cache=use_cache,
            source="http",
            sent_at_ms=sent,
            routing_key=routing[0],
            route=routing[1],
            correlation_id=correlation.decode(),
            traceparent=trace[0] if trace is not None else None,
            tracestate=trace[1] if trace is not None else None,
        )
        size = len(envelope) + REQUEST_BATCH_OVERHEAD
        if size > self._gateway.max_body_bytes:  # the limit every request message is kept under
            raise PayloadTooLarge(
                f"the request's Kafka message would be {size} bytes; the limit is "
                f"{self._gateway.max_body_bytes}: send fewer rows per request"
            )
        self._undelivered.add(correlation)
        self._outgoing.add(model, correlation, envelope, kafka_headers(*trace) if trace is not None else None)

    def _fail(self, correlations: list[bytes], error: RtmlError) -> None:
        """Fail the waiters of requests that never reached Kafka (on the event loop)."""
        if self._sends is not None:
            self._sends.failed(correlations, error.message)
        for correlation in correlations:
            self._replies.fail(correlation, error)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._outgoing.bind_loop(loop)

    def _timeout_error(self, correlation: bytes, model: str, timeout_s: float) -> RtmlError:
        if correlation in self._undelivered:
            metrics.UNAVAILABLE.labels(model).inc()
            return Unavailable(f"Kafka did not accept the request within {timeout_s * 1000:.0f} ms")
        metrics.TIMEOUTS.labels(model).inc()
        return DeadlineExceeded(f"no worker answered model '{model}' within {timeout_s * 1000:.0f} ms")


def _count_log_error(error: KafkaError | None, _message: Message) -> None:
    if error is not None:
        metrics.LOG_ERRORS.inc()


async def _within(future: asyncio.Future[bool], timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(future)
    except TimeoutError:
        return False


def _expire(future: asyncio.Future[Reply]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _settle(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


def _decode_reply(reply: Reply, request_id: str, model: str, version: str, rows: int) -> Prediction:
    if not reply.get("ok"):
        error = reply.get("error") or {}
        raise from_code(error.get("code", "internal"), error.get("message", "worker failed"))
    predictions = reply.get("predictions")
    if (
        reply.get("model") != model
        or reply.get("version") != version
        or not (isinstance(predictions, list) and len(predictions) == rows)
    ):  # never hand a caller an answer to another question
        metrics.LATE_REPLIES.inc()
        log.error("a reply did not match its request", extra={"model": model, "version": version})
        raise RtmlError(f"the worker's reply does not match the request for model '{model}' v{version}")
    from_cache = reply.get("from_cache") or []
    return Prediction(
        request_id=request_id,
        model=model,
        version=reply.get("version") or version,
        predictions=reply["predictions"],
        probabilities=reply.get("probabilities"),
        from_cache=bool(from_cache) and all(from_cache),
    )
