"""The factories every client is built with, and the one full-queue policy of every producer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from runtime.errors import QueueFull
from runtime.kafka.config import BrokerHealth, client_config, log_errors
from runtime.kafka.profiles import ADMIN, Kind, Profile
from runtime.settings import KafkaSettings

log = logging.getLogger("runtime.kafka")

DeliveryCallback = Callable[[KafkaError | None, Message], None]

QUEUE_FULL_POLL_S = 0.01
"""Slice in which a producer with a full queue serves delivery reports while it waits for room."""
DELIVERY_REPORT_MARGIN_S = 5.0
"""A drain waits this much past the longest message.timeout.ms, so every delivery report is in."""


def _properties(
    kafka: KafkaSettings, profile: Profile, kind: Kind, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    if profile.kind != kind:
        raise ValueError(f"profile {profile.name} is a {profile.kind} profile, not a {kind} one")
    return client_config(kafka, **profile.properties(kafka, overrides))


def _callbacks(profile: Profile, client_id: str) -> tuple[BrokerHealth | None, dict[str, Any]]:
    if profile.broker_health:
        health = BrokerHealth(client_id)
        return health, health.callbacks()
    return None, {"error_cb": log_errors(client_id)}


def new_consumer(
    kafka: KafkaSettings,
    profile: Profile,
    overrides: Mapping[str, Any] | None = None,
    on_stats: Callable[[str], None] | None = None,
) -> Consumer:
    """A consumer of ``profile``, with an ``error_cb`` (its caller subscribes or assigns).

    ``on_stats`` receives librdkafka's statistics JSON, for profiles that set
    ``statistics.interval.ms`` (served inside the caller's poll/consume calls)."""
    config = _properties(kafka, profile, "consumer", overrides)
    _health, callbacks = _callbacks(profile, str(config["client.id"]))
    if on_stats is not None:
        if "stats_cb" in callbacks or "statistics.interval.ms" not in config:
            raise ValueError(f"profile {profile.name} does not hand its statistics to a caller")
        callbacks["stats_cb"] = on_stats
    return Consumer({**config, **callbacks})


def new_admin(kafka: KafkaSettings) -> AdminClient:
    """An admin client (topic creation and deletion, metadata), with an ``error_cb``."""
    config = _properties(kafka, ADMIN, "admin", None)
    config["error_cb"] = log_errors(str(config["client.id"]))
    return AdminClient(config)


class KafkaProducer:
    """A producer of one profile; every message goes through :meth:`produce` (the full-queue policy).

    Delivery reports are served by whoever calls :meth:`poll` or :meth:`flush` (the worker loop,
    or :class:`PolledProducer`'s thread).
    """

    def __init__(
        self, kafka: KafkaSettings, profile: Profile, overrides: Mapping[str, Any] | None = None
    ) -> None:
        config = _properties(kafka, profile, "producer", overrides)
        self.name = str(config["client.id"])
        self.profile = profile
        self.delivery_timeout_s = profile.message_timeout_ms(kafka, overrides) / 1000
        """Every message is acknowledged or reported failed within this long (message.timeout.ms)."""
        wait = profile.queue_full_wait_s
        self.queue_full_wait_s = self.delivery_timeout_s if wait is None else wait
        health, callbacks = _callbacks(profile, self.name)
        self.health = health or BrokerHealth(self.name)
        """Reachability of the brokers; tracked only by profiles with ``broker_health``."""
        self._producer = Producer({**config, **callbacks})
        self._produce = self._producer.produce

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        on_delivery: DeliveryCallback | None = None,
        max_wait_s: float | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Enqueue one message (``headers``: Kafka message headers, e.g. a W3C ``traceparent``). A
        full local queue is drained by polling for up to ``max_wait_s`` (default: the profile's
        wait), then :class:`QueueFull` is raised."""
        try:
            if headers is None:
                self._produce(topic, value, key, on_delivery=on_delivery)
            else:  # W3C trace context (runtime/tracing.py)
                self._produce(topic, value, key, on_delivery=on_delivery, headers=headers)
        except BufferError:
            wait_s = self.queue_full_wait_s if max_wait_s is None else max_wait_s
            self._produce_when_room(topic, value, key, on_delivery, wait_s, headers)

    def _produce_when_room(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        on_delivery: DeliveryCallback | None,
        wait_s: float,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            self._producer.poll(max(0.0, min(QUEUE_FULL_POLL_S, deadline - time.monotonic())))
            try:
                if headers is None:
                    self._produce(topic, value, key, on_delivery=on_delivery)
                else:
                    self._produce(topic, value, key, on_delivery=on_delivery, headers=headers)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise QueueFull(
                        f"{self.name}: local queue still full after {wait_s:g} s "
                        f"({len(self._producer)} messages await the broker); not sent to {topic}"
                    ) from None

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(timeout_s)

    @property
    def transactions(self) -> Producer:
        """The underlying producer, for the transaction calls of a TRANSACTIONAL_PRODUCER."""
        if "transactional.id" not in self.profile.required:
            raise ValueError(f"profile {self.profile.name} is not transactional")
        return self._producer

    def flush(self, timeout_s: float) -> int:
        """Wait for every acknowledgement (serving callbacks); returns how many are still missing."""
        return int(self._producer.flush(timeout_s))

    def __len__(self) -> int:
        """Messages queued or awaiting their acknowledgement."""
        return len(self._producer)


class PolledProducer(KafkaProducer):
    """A producer whose delivery callbacks are served by its own thread."""

    def __init__(
        self,
        kafka: KafkaSettings,
        profile: Profile,
        overrides: Mapping[str, Any] | None = None,
        poll_interval_s: float = 0.5,
    ) -> None:
        super().__init__(kafka, profile, overrides)
        self._poll_interval_s = poll_interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll_forever, name=f"{self.name}-poll", daemon=True)
        self._thread.start()

    def _poll_forever(self) -> None:
        # poll() returns as soon as a delivery report arrives: the interval only bounds how often
        # an idle producer wakes up (and how long close() waits for this thread).
        while not self._stopping.is_set():
            self._producer.poll(self._poll_interval_s)

    def close(self, timeout_s: float = 5.0) -> int:
        """Deliver what is queued (bounded), then stop the poll thread."""
        remaining = self.flush(timeout_s)
        self._stopping.set()
        self._thread.join(timeout=1.0)
        if remaining:
            log.warning("producer closed with undelivered messages", extra={"count": remaining})
        return remaining


def drain_timeout_s(*delivery_timeouts_s: float) -> float:
    """How long to wait for every delivery report of producers with these delivery timeouts
    (their message.timeout.ms): the longest, plus a margin."""
    return max(delivery_timeouts_s) + DELIVERY_REPORT_MARGIN_S
