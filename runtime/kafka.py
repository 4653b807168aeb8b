"""Small typed wrappers around confluent-kafka shared by every process.

- :func:`client_config` builds librdkafka configs from settings (security extras
  applied everywhere, secrets never logged).
- :class:`BrokerHealth` tracks whether any broker is reachable, from ``error_cb``
  (instant "all brokers down") and ``stats_cb`` (recovery), so callers can fail
  fast with 503 instead of waiting out a deadline.
- :class:`PolledProducer` owns a thread that serves delivery callbacks, and
  handles a full local queue (``BufferError``) by polling instead of failing.
- :func:`ensure_topics` creates topics idempotently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


def client_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    # Nagle's algorithm would hold small request/reply messages back waiting for ACKs.
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers, "socket.nagle.disable": True}
    config.update(kafka.security)
    config.update(overrides)
    return config


@dataclass
class BrokerHealth:
    """Whether a client currently has at least one broker connection up."""

    name: str
    up: bool = True
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            with self._lock:
                self.up = False
                self.last_error = error.str()
        log.warning("kafka client error", extra={"client": self.name, "error": error.str()})

    def on_stats(self, stats_json: str) -> None:
        brokers = orjson.loads(stats_json).get("brokers", {})
        # Bootstrap entries have nodeid -1; a learned broker in state UP means connectivity.
        any_up = any(b.get("state") == "UP" for b in brokers.values() if b.get("nodeid", -1) >= 0)
        with self._lock:
            if any_up:
                self.up = True
                self.last_error = None
            elif brokers:
                self.up = False

    def callbacks(self, stats_interval_ms: int = 1000) -> dict[str, Any]:
        return {
            "error_cb": self.on_error,
            "stats_cb": self.on_stats,
            "statistics.interval.ms": stats_interval_ms,
        }


class PolledProducer:
    """A confluent Producer whose delivery callbacks are served by its own thread."""

    def __init__(self, config: dict[str, Any], name: str, poll_interval_s: float = 0.05) -> None:
        self.health = BrokerHealth(name)
        self._producer = Producer({**config, **self.health.callbacks()})
        self._poll_interval_s = poll_interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll_forever, name=f"{name}-poll", daemon=True)
        self._thread.start()

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(self._poll_interval_s)

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        on_delivery: DeliveryCallback | None = None,
        max_wait_s: float = 1.0,
    ) -> None:
        """Enqueue a message; a full local queue is drained for up to ``max_wait_s``."""
        deadline = time.monotonic() + max_wait_s
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise
                self._producer.poll(0.01)

    def flush(self, timeout_s: float) -> int:
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 5.0) -> int:
        """Deliver what is queued (bounded), then stop the poll thread."""
        remaining = self.flush(timeout_s)
        self._stopping.set()
        self._thread.join(timeout=1.0)
        if remaining:
            log.warning("producer closed with undelivered messages", extra={"count": remaining})
        return remaining


def ensure_topics(
    admin: AdminClient,
    topics: Iterable[tuple[str, int, dict[str, str]]],
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> None:
    """Create (name, partitions, config) topics that do not exist yet."""
    wanted = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=config)
        for name, partitions, config in topics
    ]
    if not wanted:
        return
    futures = admin.create_topics(wanted, request_timeout=timeout_s, operation_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise
        log.info("created topic", extra={"topic": name})


def delete_topics(admin: AdminClient, names: list[str], timeout_s: float = 10.0) -> None:
    if not names:
        return
    for name, future in admin.delete_topics(names, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            log.warning("could not delete topic", extra={"topic": name, "error": str(exc)})


def committed_lag(config: dict[str, Any], group: str, topic: str, timeout_s: float = 10.0) -> int:
    """Messages of ``topic`` (all partitions) not yet committed by consumer ``group``: what an
    autoscaler or a drain check watches. ``config`` holds bootstrap.servers (and security)."""
    admin = AdminClient(config)
    partitions = admin.list_topics(topic, timeout=timeout_s).topics[topic].partitions
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s)
        lag = 0
        for partition in committed:
            _low, high = consumer.get_watermark_offsets(partition, timeout=timeout_s)
            lag += high - max(partition.offset, 0)  # no commit yet: everything is lag
        return int(lag)
    finally:
        consumer.close()


def ensure_serving_topics(kafka: KafkaSettings, models: Iterable[str]) -> None:
    """Create the request topic of each model, the prediction log and the dead-letter topic."""
    topics: list[tuple[str, int, dict[str, str]]] = [
        (kafka.request_topic(model), kafka.request_partitions, {}) for model in models
    ]
    topics += [
        (kafka.predictions_topic, kafka.log_partitions, {}),
        (kafka.dlq_topic, kafka.log_partitions, {}),
    ]
    ensure_topics(AdminClient(client_config(kafka)), topics, kafka.replication_factor)
