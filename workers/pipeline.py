"""One consumed batch through the stages: decode -> cache -> ONNX -> reply + log.

A message may carry one request or a PredictRequestBatch of many; from decoding on, every
request is handled on its own. The replies of one consumed batch for one gateway go out
in one PredictReplyBatch message (one produce, one broker write, one wake-up there).

Every message ends as predictions in the log or as a dead letter with the reason.
Rows of all requests for the same model version are handled as one array: one
cache-key pass, one MGET for the whole batch, one ONNX Runtime call per version
(in chunks of ``max_batch_rows``). A model failure on a batch is retried request
by request, so one poison request cannot fail its neighbours.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
from confluent_kafka import Message

from runtime.cache_keys import cache_keys, decode_value, encode_value, version_tag
from runtime.clock import now_ms
from runtime.errors import DeadlineExceeded, ModelError
from runtime.model_policy import shadows
from runtime.settings import Settings
from schemas.messages import Label
from schemas.wire import encode_prediction_records
from workers import codec, metrics
from workers.cache import WorkerCache
from workers.codec import DecodedRequest, Rejected
from workers.inference import ModelRuntime, RuntimeTable
from workers.outbox import Outbox
from workers.reply import ReplySender
from workers.tracing import BatchSpans

if TYPE_CHECKING:
    from runtime.tracing_otel import Tracing

log = logging.getLogger(__name__)


class VersionBatch:
    """All rows of one batch that go to the same model version, flattened in request order."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.items: list[DecodedRequest] = []
        self.starts: list[int] = []
        self.rows: list[list[float]] = []
        self.keys: list[str] = []
        """Cache key per row; empty when no row of the batch uses the cache."""
        self.cached: list[bool] = []
        """Per row: whether its request uses the cache at all (:meth:`Pipeline._caches`)."""
        self.labels: list[Label | None] = []
        self.probabilities: list[list[float] | None] = []
        self.from_cache: list[bool] = []
        self.failed: set[int] = set()  # indexes into items

    def add(self, item: DecodedRequest, cached: bool) -> None:
        self.items.append(item)
        self.starts.append(len(self.rows))
        self.rows.extend(item.request.features)
        self.cached.extend([cached] * len(item.request.features))

    def span(self, index: int) -> range:
        end = self.starts[index + 1] if index + 1 < len(self.starts) else len(self.rows)
        return range(self.starts[index], end)

    def prepare(self, prefix: str, model: str, decimals: int | None = None) -> np.ndarray:
        array = np.asarray(self.rows, dtype=np.float64)
        if any(self.cached):  # hashing is per row: skipped when nothing will be looked up or stored
            tag = version_tag(self.runtime.version, self.runtime.metadata.onnx_sha256)
            self.keys = cache_keys(prefix, model, tag, array, decimals)
        size = len(self.rows)
        self.labels, self.probabilities, self.from_cache = [None] * size, [None] * size, [False] * size
        return array


def _batch_for(batches: dict[str, VersionBatch], runtime: ModelRuntime) -> VersionBatch:
    batch = batches.get(runtime.version)
    if batch is None:
        batch = batches[runtime.version] = VersionBatch(runtime)
    return batch


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        runtimes: RuntimeTable,
        cache: WorkerCache,
        outbox: Outbox,
        replies: ReplySender,
        worker_id: str,
        tracing: Tracing | None = None,
    ) -> None:
        self._runtimes = runtimes
        self._model = runtimes.model
        self._cache = cache
        self._outbox = outbox
        self._replies = replies
        self._worker_id = worker_id
        self._key_prefix = settings.redis.key_prefix
        self._key_precision = settings.redis.key_precision
        self._reply_prefix = settings.kafka.reply_topic_prefix
        self._log_topic = settings.kafka.predictions_topic
        self._dlq_topic = settings.kafka.dlq_topic
        self._max_rows = settings.worker.max_batch_rows
        self._cache_direct = settings.redis.cache_direct_requests
        self._outgoing: dict[str, list[codec.Reply]] = {}
        """Replies of the batch being processed, by reply topic; sent at its end."""
        self._spans = BatchSpans(tracing, self._model) if tracing is not None else None
        """None when tracing is off (decided once, here): then no request gets a span."""

    def process(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        arrived_ms = now_ms()
        batches: dict[str, VersionBatch] = {}
        policy = self._runtimes.policy
        spans = self._spans
        if spans is not None:
            spans.begin()
        for message in messages:
            for outcome in codec.decode(message, self._runtimes, arrived_ms, self._reply_prefix):
                if isinstance(outcome, Rejected):
                    self._reject(outcome, arrived_ms)
                    continue
                if spans is not None:
                    outcome = spans.traced(outcome)
                cached = self._caches(outcome)
                _batch_for(batches, outcome.runtime).add(outcome, cached)
                for version in shadows(policy, outcome.runtime.version, outcome.request.routing_key):
                    runtime = self._runtimes.runtime(version)
                    if runtime is not None:
                        mirrored = DecodedRequest(
                            message, outcome.request, runtime, "shadow", shadow=True, trace=outcome.trace
                        )
                        _batch_for(batches, runtime).add(mirrored, cached)
        try:
            if batches:
                self._serve(list(batches.values()), started)
            self._send_replies()
        finally:
            if spans is not None:
                spans.end()
        self._replies.poll()
        metrics.BATCH_SECONDS.labels(self._model).observe(time.perf_counter() - started)

    def _caches(self, item: DecodedRequest) -> bool:
        """Whether a request's rows go through the prediction cache (read if it asks, and written).
        A request the gateway sent always does: the gateway reads the cache, the worker fills it.
        A request produced straight to Kafka does only with ``redis.cache_direct_requests``: such
        feature rows (events) rarely repeat, and a cache write costs Redis and the worker more
        per row than the prediction it saves (bench/RESULTS.md)."""
        return item.request.source == "http" or self._cache_direct

    def _reject(self, rejected: Rejected, at_ms: int) -> None:
        if rejected.shadow:  # the request itself was served: a shadow's failure is only counted
            metrics.SHADOW_ERRORS.labels(self._model, rejected.shadow).inc()
            log.warning("shadow version failed", extra={"model": self._model, "version": rejected.shadow})
            return
        metrics.DEAD_LETTERS.labels(self._model, rejected.reason).inc()
        if self._spans is not None:
            self._spans.rejected(rejected)
        self._outbox.send(self._dlq_topic, codec.encode_dead_letter(rejected, self._worker_id, at_ms))
        request = rejected.request
        if request is not None and request.reply_to and not isinstance(rejected.error, DeadlineExceeded):
            self._answer(request.reply_to, codec.encode_error_reply(request, rejected.error))
        log.info(
            "dead-lettered",
            extra={"reason": rejected.reason, "detail": rejected.detail, "offset": rejected.message.offset()},
        )

    def _serve(self, batches: list[VersionBatch], started: float) -> None:
        decimals = self._key_precision.get(self._model)
        arrays = [batch.prepare(self._key_prefix, self._model, decimals) for batch in batches]
        self._read_cache(batches)
        to_cache: list[tuple[str, bytes]] = []
        for batch, array in zip(batches, arrays, strict=True):
            self._predict_misses(batch, array, to_cache)
        done_ms = now_ms()
        worker_ms = (time.perf_counter() - started) * 1000
        # Latency first: the replies leave before the log records are encoded and the cache is
        # written (neither changes an answer; offsets still wait for the log's acknowledgement).
        for batch in batches:
            self._answer_all(batch, worker_ms)
        self._send_replies()
        for batch in batches:
            self._log(batch, done_ms)
        self._cache.put_many(to_cache)

    def _read_cache(self, batches: list[VersionBatch]) -> None:
        wanted = [
            (batch, row)
            for batch in batches
            for index, item in enumerate(batch.items)
            if item.request.use_cache
            for row in batch.span(index)
            if batch.cached[row]
        ]
        if not wanted:
            return
        values = self._cache.get_many([batch.keys[row] for batch, row in wanted])
        counts: dict[tuple[str, str], int] = {}
        for (batch, row), raw in zip(wanted, values, strict=True):
            cached = decode_value(raw) if raw is not None else None
            result = "miss" if raw is None else "corrupt"  # a corrupt value is a miss, counted
            if cached is not None:
                batch.labels[row], batch.probabilities[row] = cached
                batch.from_cache[row] = True
                result = "hit"
            key = (batch.runtime.version, result)
            counts[key] = counts.get(key, 0) + 1
        for (version, result), count in counts.items():
            metrics.CACHE.labels(self._model, version, result).inc(count)

    def _predict_misses(
        self, batch: VersionBatch, array: np.ndarray, to_cache: list[tuple[str, bytes]]
    ) -> None:
        misses = [row for row, hit in enumerate(batch.from_cache) if not hit]
        if not misses:
            return
        try:
            self._run(batch, array, misses, to_cache)
        except Exception:  # the model failed on this batch: isolate the poison request
            log.exception("batch inference failed; retrying request by request", extra={"model": self._model})
            self._run_one_by_one(batch, array, set(misses), to_cache)

    def _run(
        self, batch: VersionBatch, array: np.ndarray, rows: list[int], to_cache: list[tuple[str, bytes]]
    ) -> None:
        for start in range(0, len(rows), self._max_rows):
            chunk = rows[start : start + self._max_rows]
            began = time.perf_counter()
            result = batch.runtime.predict(array[chunk].astype(np.float32))
            metrics.INFERENCE_SECONDS.labels(self._model).observe(time.perf_counter() - began)
            metrics.BATCH_ROWS.labels(self._model).observe(len(chunk))
            probabilities = result.probabilities.tolist() if result.probabilities is not None else None
            for position, row in enumerate(chunk):
                label = result.labels[position]
                row_probabilities = probabilities[position] if probabilities is not None else None
                batch.labels[row] = label
                batch.probabilities[row] = row_probabilities
                if batch.cached[row]:
                    to_cache.append((batch.keys[row], encode_value(label, row_probabilities)))

    def _run_one_by_one(
        self, batch: VersionBatch, array: np.ndarray, misses: set[int], to_cache: list[tuple[str, bytes]]
    ) -> None:
        for index, item in enumerate(batch.items):
            rows = [row for row in batch.span(index) if row in misses]
            if not rows:
                continue
            try:
                self._run(batch, array, rows, to_cache)
            except Exception as exc:
                batch.failed.add(index)
                error = ModelError(f"model '{self._model}' v{batch.runtime.version} failed: {exc}")
                shadow = batch.runtime.version if item.shadow else None
                metrics.SERVED.error(self._model, batch.runtime.version)
                self._reject(Rejected(item.message, error, item.request, shadow=shadow), now_ms())

    def _answer_all(self, batch: VersionBatch, worker_ms: float) -> None:
        for index, item in enumerate(batch.items):
            if index not in batch.failed and item.request.reply_to and not item.shadow:
                self._reply(batch, batch.span(index), item, worker_ms)

    def _log(self, batch: VersionBatch, done_ms: int) -> None:
        version = batch.runtime.version
        classifier = batch.runtime.metadata.task == "classification"
        rows: Counter[tuple[str, str]] = Counter()
        latencies: list[float] = []
        for index, item in enumerate(batch.items):
            if index in batch.failed:
                continue
            request = item.request
            span = batch.span(index)
            if request.sent_at_ms is not None:
                latencies.append(done_ms - request.sent_at_ms)
            records = encode_prediction_records(
                request_id=request.request_id,
                model=request.model,
                version=version,
                features=request.features,
                predictions=batch.labels[span.start : span.stop],  # type: ignore[arg-type]  # all filled
                probabilities=batch.probabilities[span.start : span.stop],
                from_cache=batch.from_cache[span.start : span.stop],
                source=request.source,
                predicted_at_ms=done_ms,
                sent_at_ms=request.sent_at_ms,
                served_by="worker",
                top_probability=classifier,
                route=item.route,
                trace=item.trace,
            )
            self._outbox.send_many(self._log_topic, records, request.request_id.encode())
            rows[request.source, item.route] += len(span)
        for (source, route), count in rows.items():
            metrics.ROWS.labels(self._model, version, source, route).inc(count)
            metrics.SERVED.add(self._model, version, route, count)
        # For the canary judge: latency per request, and the label distribution (not a regressor's).
        labelled = batch.runtime.metadata.task != "regression"
        if not labelled:
            done: list[Label | None] = []
        elif not batch.failed:
            done = batch.labels
        else:
            done = [label for row, label in enumerate(batch.labels) if not self._failed_row(batch, row)]
        metrics.SERVED.add_batch(self._model, version, latencies, done)
        answered = sum(
            1 for index, item in enumerate(batch.items) if index not in batch.failed and not item.shadow
        )
        metrics.MESSAGES.labels(self._model, "served").inc(answered)

    @staticmethod
    def _failed_row(batch: VersionBatch, row: int) -> bool:
        return bool(batch.failed) and any(row in batch.span(index) for index in batch.failed)

    def _reply(self, batch: VersionBatch, span: range, item: DecodedRequest, worker_ms: float) -> None:
        request = item.request
        labels = cast(list[Label], batch.labels[span.start : span.stop])  # all filled by now
        probabilities = batch.probabilities[span.start : span.stop]
        from_cache = batch.from_cache[span.start : span.stop]
        reply = codec.encode_reply(
            request, batch.runtime.version, labels, probabilities, from_cache, worker_ms, item.route
        )
        self._answer(request.reply_to, reply)  # type: ignore[arg-type]  # checked by the caller

    def _answer(self, topic: str, reply: codec.Reply) -> None:
        replies = self._outgoing.get(topic)
        if replies is None:
            self._outgoing[topic] = [reply]
        else:
            replies.append(reply)

    def _send_replies(self) -> None:
        for topic, replies in self._outgoing.items():
            for value in codec.encode_reply_batches(replies):
                self._replies.send(topic, value)
        self._outgoing.clear()
