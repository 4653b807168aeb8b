"""The worker run loop (the process around it is :mod:`workers.main`).

One :class:`ModelWorker` per model (its own consumer group member and durable
producer), each in its own thread; a process may host several models. The loop
reads top to bottom: poll a batch, process it (replies and log records go to the
producers), then store the offsets of every earlier batch whose outcome the broker
has acknowledged, in order (or rewind and retry, see :mod:`workers.inflight`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from confluent_kafka import Message

from runtime.artifacts import ArtifactStore
from runtime.kafka import drain_timeout_s
from runtime.memory import trim_heap
from runtime.registry import ModelRegistry
from runtime.settings import Settings
from schemas.control import ModelPolicy
from workers import metrics
from workers.cache import WorkerCache
from workers.consume import RequestConsumer
from workers.inference import RuntimeTable
from workers.inflight import BatchTicket, InFlight
from workers.outbox import DurableOutbox
from workers.pipeline import Pipeline
from workers.reply import ReplySender
from workers.transactional import TransactionalOutbox

if TYPE_CHECKING:
    from runtime.tracing_otel import Tracing

log = logging.getLogger(__name__)

REWIND_BACKOFF_S = 1.0
SETTLE_POLL_S = 0.005
"""While batches are in flight, an idle loop polls this often so their offsets get stored."""
TRIM_AFTER_IDLE_S = 2.0
"""Idle this long after a batch, a worker returns freed heap to the OS (runtime/memory.py)."""


@dataclass(frozen=True)
class RunLimits:
    """Bounds so tests and benchmarks end by themselves (None: unbounded)."""

    max_messages: int | None = None
    idle_timeout_s: float | None = None


class ModelWorker:
    def __init__(
        self,
        settings: Settings,
        model: str,
        cache: WorkerCache,
        worker_id: str,
        policy: ModelPolicy | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing``: the process's tracer (runtime/tracing.py), None when tracing is off."""
        registry = ModelRegistry(settings.registry.root)
        self.model = model
        metrics.start_model(model)
        self._settings = settings.worker
        artifacts = ArtifactStore(settings.kafka, f"{worker_id}-{model}-artifacts")
        self._runtimes = RuntimeTable(
            registry, model, threads=settings.worker.ort_threads, policy=policy, artifacts=artifacts
        )
        self._exactly_once = settings.worker.exactly_once
        self._outbox: DurableOutbox | TransactionalOutbox
        if self._exactly_once:
            group = f"{settings.worker.group_prefix}{model}"
            self._outbox = TransactionalOutbox(
                settings.kafka, f"{worker_id}-{model}-log", transactional_id=f"{group}.{worker_id}"
            )
        else:
            self._outbox = DurableOutbox(settings.kafka, client_id=f"{worker_id}-{model}-log")
        self._replies = ReplySender(settings.kafka, client_id=f"{worker_id}-{model}-replies")
        # Every delivery report arrives within its producer's message.timeout.ms (the profiles in
        # runtime/kafka/profiles.py): wait that long for the oldest batch, a margin more to drain.
        self._ack_timeout_s = max(self._outbox.delivery_timeout_s, self._replies.delivery_timeout_s)
        self._drain_timeout_s = drain_timeout_s(self._ack_timeout_s)
        self._consumer = RequestConsumer(
            settings.kafka,
            group=f"{settings.worker.group_prefix}{model}",
            topic=settings.kafka.request_topic(model),
            client_id=f"{worker_id}-{model}",
            exactly_once=self._exactly_once,
            model=model,
        )
        self._pipeline = Pipeline(
            settings, self._runtimes, cache, self._outbox, self._replies, worker_id, tracing
        )
        self._in_flight = InFlight(self._consumer.store, self._consumer.rewind)
        self._consumer.before_revoke = self._drain

    def stats_at(self) -> float | None:
        """When the loop last polled Kafka (its consumer's statistics; None before the first)."""
        return self._consumer.lag.stats_at

    @property
    def runtimes(self) -> RuntimeTable:
        return self._runtimes

    def apply(self, policy: ModelPolicy) -> None:
        """A control-plane change (called in the control thread): load what it needs, then route
        by it. The serving loop keeps going meanwhile; no request waits for a load."""
        self._runtimes.refresh(policy)
        log.info(
            "model policy applied",
            extra={
                "model": self.model,
                "revision": policy.revision,
                "default": policy.default,
                "loaded": self._runtimes.loaded,
            },
        )

    def run(self, stop: threading.Event, limits: RunLimits = RunLimits()) -> int:
        """Serve until ``stop`` is set or a limit is reached; returns messages settled."""
        poll_s = self._settings.poll_timeout_ms / 1000
        delay_s = self._settings.max_batch_delay_ms / 1000
        fetched, settled, idle_since = 0, 0, time.monotonic()
        trimmed = True  # nothing to give back before the first batch
        try:
            while not stop.is_set() and not _reached(limits.max_messages, fetched):
                timeout_s = SETTLE_POLL_S if self._in_flight else poll_s
                batch = self._consumer.next_batch(self._settings.max_batch_rows, timeout_s, delay_s)
                if batch:
                    self._process(batch)
                    fetched += len(batch)
                    idle_since = time.monotonic()
                    trimmed = False
                done, ok = self._settle(wait=len(self._in_flight) > self._settings.max_batches_in_flight)
                settled += done
                if not ok:
                    metrics.REDELIVERIES.labels(self.model).inc()
                    stop.wait(REWIND_BACKOFF_S)
                    idle_since = time.monotonic()
                elif (
                    not trimmed and not self._in_flight and time.monotonic() - idle_since > TRIM_AFTER_IDLE_S
                ):
                    trim_heap()
                    trimmed = True
                elif (
                    not batch
                    and not self._in_flight
                    and limits.idle_timeout_s is not None
                    and time.monotonic() - idle_since > limits.idle_timeout_s
                ):
                    break
            settled += self._drain()
        finally:
            self.close()
        return settled

    def _process(self, batch: list[Message]) -> None:
        if isinstance(self._outbox, TransactionalOutbox):
            self._process_in_transaction(self._outbox, batch)
            return
        ticket = BatchTicket(batch)
        self._outbox.track(ticket)
        self._replies.track(ticket)
        self._pipeline.process(batch)
        self._in_flight.add(ticket)

    def _process_in_transaction(self, outbox: TransactionalOutbox, batch: list[Message]) -> None:
        """worker.exactly_once: the batch's output and offsets commit together, or the batch is
        consumed again (nothing of it visible to read_committed readers)."""
        self._replies.track(BatchTicket(batch))
        outbox.begin()
        self._pipeline.process(batch)
        if not outbox.commit(batch, self._consumer):
            metrics.REDELIVERIES.labels(self.model).inc()
            self._consumer.rewind(batch)

    def _settle(self, wait: bool) -> tuple[int, bool]:
        """Serve delivery callbacks and store finished batches; with ``wait``, block until the
        oldest batch is finished (bounds the batches in flight)."""
        self._replies.poll()
        self._outbox.poll()
        settled, ok = self._in_flight.settle()
        deadline = time.monotonic() + self._ack_timeout_s
        while ok and wait and self._in_flight and time.monotonic() < deadline:
            self._outbox.poll(SETTLE_POLL_S)
            self._replies.poll()
            more, ok = self._in_flight.settle()
            settled += more
            wait = len(self._in_flight) > self._settings.max_batches_in_flight
        return settled, ok

    def _drain(self) -> int:
        """Wait for every acknowledgement and store what succeeded, in order (on stop and before
        a revoke). A failed batch is not rewound here (see :meth:`InFlight.settle`); nothing
        after it is stored, so its partitions' next reader serves it again."""
        self._replies.flush(self._drain_timeout_s)
        self._outbox.flush(self._drain_timeout_s)
        settled, _ok = self._in_flight.settle(rewind=False)
        return settled

    def close(self) -> None:
        self._replies.close()
        self._outbox.close()
        self._consumer.close()
        log.info("model worker stopped", extra={"model": self.model})


def _reached(limit: int | None, count: int) -> bool:
    return limit is not None and count >= limit
