"""Durable output of a worker loop: the prediction log and dead letters.

Idempotent producer with acks=all. :meth:`DurableOutbox.confirm` waits for every
message sent since the last confirm and says whether all were acknowledged: the
loop stores the batch's offsets only when it says yes (at-least-once).
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, Message, Producer

from rtml.kafka import client_config
from rtml.settings import KafkaSettings

log = logging.getLogger(__name__)


class DurableOutbox:
    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self._producer = Producer(
            client_config(
                kafka,
                **{
                    "client.id": client_id,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 1,
                    "compression.type": "lz4",
                    "message.timeout.ms": 30000,
                    "error_cb": lambda error: log.warning("producer error", extra={"error": error.str()}),
                },
            )
        )
        self._failures = 0
        self._last_error: str | None = None

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures += 1
            self._last_error = error.str()

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                return
            except BufferError:
                # Local queue full: serve deliveries to make room (bounded by message.timeout.ms).
                self._producer.poll(0.05)

    def confirm(self, timeout_s: float) -> bool:
        remaining = self._producer.flush(timeout_s)
        ok = remaining == 0 and self._failures == 0
        if not ok:
            log.error(
                "durable write failed",
                extra={"undelivered": remaining, "failed": self._failures, "error": self._last_error},
            )
        self._failures = 0
        return ok

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
