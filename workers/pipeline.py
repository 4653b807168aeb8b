"""One consumed batch through the stages: decode -> cache -> ONNX -> reply + log.

Every message ends as predictions in the log or as a dead letter with the reason.
A model failure on a batch is retried request by request, so one poison request
cannot fail its neighbours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import Message

from rtml.cache_keys import cache_key, decode_value, encode_value
from rtml.errors import ModelError
from rtml.settings import Settings
from schemas.messages import Label
from schemas.wire import encode_prediction_record
from workers import codec, metrics
from workers.cache import WorkerCache
from workers.codec import DecodedRequest, Rejected
from workers.outbox import DurableOutbox
from workers.reply import ReplySender
from workers.runtime import ModelRuntime, RuntimeTable

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Served:
    """Per-request results, filled row by row from the cache and the model."""

    item: DecodedRequest
    labels: list[Label | None]
    probabilities: list[list[float] | None]
    from_cache: list[bool]
    keys: list[str] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        runtimes: RuntimeTable,
        cache: WorkerCache,
        outbox: DurableOutbox,
        replies: ReplySender,
        worker_id: str,
    ) -> None:
        self._runtimes = runtimes
        self._model = runtimes.model
        self._cache = cache
        self._outbox = outbox
        self._replies = replies
        self._worker_id = worker_id
        self._key_prefix = settings.redis.key_prefix
        self._reply_prefix = settings.kafka.reply_topic_prefix
        self._log_topic = settings.kafka.predictions_topic
        self._dlq_topic = settings.kafka.dlq_topic
        self._max_rows = settings.worker.max_batch_rows

    def process(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        arrived_ms = now_ms()
        accepted: list[DecodedRequest] = []
        for message in messages:
            outcome = codec.decode(message, self._runtimes, arrived_ms, self._reply_prefix)
            if isinstance(outcome, Rejected):
                self._reject(outcome, arrived_ms)
            else:
                accepted.append(outcome)
        if accepted:
            self._serve(accepted, started)
        self._replies.poll()
        metrics.BATCH_SECONDS.labels(self._model).observe(time.perf_counter() - started)

    def _reject(self, rejected: Rejected, at_ms: int) -> None:
        metrics.DEAD_LETTERS.labels(self._model, rejected.reason).inc()
        self._outbox.send(self._dlq_topic, codec.encode_dead_letter(rejected, self._worker_id, at_ms))
        request = rejected.request
        if request is not None and request.reply_to and rejected.reason != "expired":
            self._replies.send(
                request.reply_to, request.request_id, codec.encode_error_reply(request, rejected)
            )
        log.info(
            "dead-lettered",
            extra={"reason": rejected.reason, "detail": rejected.detail, "offset": rejected.message.offset()},
        )

    def _serve(self, accepted: list[DecodedRequest], started: float) -> None:
        served = [self._lookup_plan(item) for item in accepted]
        self._read_cache(served)
        failed = self._predict_misses(served)
        done_ms = now_ms()
        worker_ms = (time.perf_counter() - started) * 1000
        for entry in served:
            if id(entry) in failed:
                continue
            self._emit(entry, done_ms, worker_ms)
        metrics.MESSAGES.labels(self._model, "served").inc(len(served) - len(failed))

    def _lookup_plan(self, item: DecodedRequest) -> _Served:
        rows = len(item.request.features)
        entry = _Served(item, [None] * rows, [None] * rows, [False] * rows)
        version = item.runtime.version
        entry.keys = [cache_key(self._key_prefix, self._model, version, row) for row in item.request.features]
        return entry

    def _read_cache(self, served: list[_Served]) -> None:
        wanted = [
            (entry, index)
            for entry in served
            if entry.item.request.use_cache
            for index in range(len(entry.keys))
        ]
        values = self._cache.get_many([entry.keys[index] for entry, index in wanted])
        hits = 0
        for (entry, index), raw in zip(wanted, values, strict=True):
            if raw is not None:
                entry.labels[index], entry.probabilities[index] = decode_value(raw)
                entry.from_cache[index] = True
                hits += 1
        if wanted:
            metrics.CACHE.labels(self._model, "hit").inc(hits)
            metrics.CACHE.labels(self._model, "miss").inc(len(wanted) - hits)

    def _predict_misses(self, served: list[_Served]) -> set[int]:
        """Run ONNX once per version on all missed rows; returns ids of failed entries."""
        by_version: dict[str, list[tuple[_Served, int]]] = {}
        for entry in served:
            for index, hit in enumerate(entry.from_cache):
                if not hit:
                    by_version.setdefault(entry.item.runtime.version, []).append((entry, index))
        failed: set[int] = set()
        to_cache: list[tuple[str, bytes]] = []
        for slots in by_version.values():
            runtime = slots[0][0].item.runtime
            try:
                self._run(runtime, slots, to_cache)
            except Exception:  # the model failed on this batch: isolate the poison request
                log.exception(
                    "batch inference failed; retrying request by request", extra={"model": self._model}
                )
                failed |= self._run_one_by_one(runtime, slots, to_cache)
        self._cache.put_many(to_cache)
        return failed

    def _run(
        self, runtime: ModelRuntime, slots: list[tuple[_Served, int]], to_cache: list[tuple[str, bytes]]
    ) -> None:
        for start in range(0, len(slots), self._max_rows):
            chunk = slots[start : start + self._max_rows]
            rows = np.asarray(
                [entry.item.request.features[index] for entry, index in chunk], dtype=np.float32
            )
            began = time.perf_counter()
            result = runtime.predict(rows)
            metrics.INFERENCE_SECONDS.labels(self._model).observe(time.perf_counter() - began)
            metrics.BATCH_ROWS.labels(self._model).observe(len(chunk))
            probabilities = result.probabilities.tolist() if result.probabilities is not None else None
            for position, (entry, index) in enumerate(chunk):
                label = result.labels[position]
                row_probabilities = probabilities[position] if probabilities is not None else None
                entry.labels[index] = label
                entry.probabilities[index] = row_probabilities
                to_cache.append((entry.keys[index], encode_value(label, row_probabilities)))

    def _run_one_by_one(
        self, runtime: ModelRuntime, slots: list[tuple[_Served, int]], to_cache: list[tuple[str, bytes]]
    ) -> set[int]:
        by_entry: dict[int, list[tuple[_Served, int]]] = {}
        for slot in slots:
            by_entry.setdefault(id(slot[0]), []).append(slot)
        failed: set[int] = set()
        for entry_slots in by_entry.values():
            try:
                self._run(runtime, entry_slots, to_cache)
            except Exception as exc:
                entry = entry_slots[0][0]
                failed.add(id(entry))
                error = ModelError(f"model '{self._model}' v{runtime.version} failed: {exc}")
                self._reject(
                    Rejected(
                        entry.item.message, "model_error", error.message, entry.item.request, error.code
                    ),
                    now_ms(),
                )
        return failed

    def _emit(self, entry: _Served, done_ms: int, worker_ms: float) -> None:
        request = entry.item.request
        version = entry.item.runtime.version
        labels: list[Label] = entry.labels  # type: ignore[assignment]  # all rows filled by now
        for row, label in enumerate(labels):
            record = encode_prediction_record(
                request_id=request.request_id,
                row=row,
                model=request.model,
                version=version,
                features=request.features[row],
                prediction=label,
                probabilities=entry.probabilities[row],
                from_cache=entry.from_cache[row],
                source=request.source,
                predicted_at_ms=done_ms,
                sent_at_ms=request.sent_at_ms,
                served_by="worker",
            )
            self._outbox.send(self._log_topic, record, request.request_id.encode())
        metrics.ROWS.labels(self._model, version, request.source).inc(len(labels))
        if request.reply_to:
            reply = codec.encode_reply(
                request, version, labels, entry.probabilities, entry.from_cache, worker_ms
            )
            self._replies.send(request.reply_to, request.request_id, reply)
