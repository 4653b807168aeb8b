"""The worker run loop and the worker process.

One :class:`ModelWorker` per model (its own consumer group member and durable
producer), each in its own thread; a process may host several models. The loop
reads top to bottom: poll a batch, process it, make the outcome durable, then
store the offsets (or rewind and retry).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from rtml.kafka import client_config, ensure_topics
from rtml.registry import ModelRegistry
from rtml.settings import Settings
from workers import metrics
from workers.cache import WorkerCache
from workers.consume import RequestConsumer
from workers.outbox import DurableOutbox
from workers.pipeline import Pipeline
from workers.reply import ReplySender
from workers.runtime import RuntimeTable

log = logging.getLogger(__name__)

DURABLE_TIMEOUT_S = 30.0
REWIND_BACKOFF_S = 1.0


@dataclass(frozen=True)
class RunLimits:
    """Bounds so tests and benchmarks end by themselves (None: unbounded)."""

    max_messages: int | None = None
    idle_timeout_s: float | None = None


class ModelWorker:
    def __init__(self, settings: Settings, model: str, cache: WorkerCache, worker_id: str) -> None:
        registry = ModelRegistry(settings.registry.root)
        self.model = model
        self._settings = settings.worker
        self._runtimes = RuntimeTable(registry, model, threads=settings.worker.ort_threads)
        self._outbox = DurableOutbox(settings.kafka, client_id=f"{worker_id}-{model}-log")
        self._replies = ReplySender(settings.kafka, client_id=f"{worker_id}-{model}-replies")
        self._consumer = RequestConsumer(
            settings.kafka,
            group=f"{settings.worker.group_prefix}{model}",
            topic=settings.kafka.request_topic(model),
            client_id=f"{worker_id}-{model}",
        )
        self._pipeline = Pipeline(settings, self._runtimes, cache, self._outbox, self._replies, worker_id)

    def run(self, stop: threading.Event, limits: RunLimits = RunLimits()) -> int:
        """Serve until ``stop`` is set or a limit is reached; returns messages consumed."""
        poll_s = self._settings.poll_timeout_ms / 1000
        delay_s = self._settings.max_batch_delay_ms / 1000
        consumed, idle_since = 0, time.monotonic()
        try:
            while not stop.is_set() and not _reached(limits.max_messages, consumed):
                batch = self._consumer.next_batch(self._settings.max_batch_rows, poll_s, delay_s)
                if not batch:
                    if (
                        limits.idle_timeout_s is not None
                        and time.monotonic() - idle_since > limits.idle_timeout_s
                    ):
                        break
                    continue
                self._pipeline.process(batch)
                self._replies.flush(DURABLE_TIMEOUT_S)
                if self._outbox.confirm(DURABLE_TIMEOUT_S):
                    self._consumer.store(batch)
                    consumed += len(batch)
                else:
                    metrics.REDELIVERIES.labels(self.model).inc()
                    self._consumer.rewind(batch)
                    stop.wait(REWIND_BACKOFF_S)
                idle_since = time.monotonic()
        finally:
            self.close()
        return consumed

    def close(self) -> None:
        self._replies.close()
        self._outbox.close()
        self._consumer.close()
        log.info("model worker stopped", extra={"model": self.model})


def _reached(limit: int | None, count: int) -> bool:
    return limit is not None and count >= limit


def ensure_request_topics(settings: Settings, models: list[str]) -> None:
    admin = AdminClient(client_config(settings.kafka))
    kafka = settings.kafka
    topics: list[tuple[str, int, dict[str, str]]] = [
        (kafka.request_topic(model), kafka.request_partitions, {}) for model in models
    ]
    topics += [
        (kafka.predictions_topic, kafka.log_partitions, {}),
        (kafka.dlq_topic, kafka.log_partitions, {}),
    ]
    ensure_topics(admin, topics, kafka.replication_factor)


def run_worker_process(settings: Settings, models: list[str], limits: RunLimits = RunLimits()) -> None:
    """Serve ``models`` (names, or ["all"]) until SIGTERM/SIGINT or the limits; one thread per model."""
    if models == ["all"]:
        models = ModelRegistry(settings.registry.root).list_models()
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    ensure_request_topics(settings, models)
    if settings.worker.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker.metrics_port, addr=settings.gateway.host)
    cache = WorkerCache(settings.redis)
    stop = threading.Event()
    _install_signal_handlers(stop)
    workers = [ModelWorker(settings, model, cache, worker_id) for model in models]
    threads = [
        threading.Thread(target=worker.run, args=(stop, limits), name=f"worker-{worker.model}")
        for worker in workers
    ]
    for thread in threads:
        thread.start()
    log.info("worker started", extra={"models": models, "worker": worker_id})
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
    cache.close()
    log.info("worker stopped", extra={"worker": worker_id})


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        log.info("stopping on signal", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
