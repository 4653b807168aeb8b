"""Durable output of a worker loop: the prediction log and dead letters.

Idempotent producer with acks=all. Every message counts against the ticket of the
batch being processed (:meth:`DurableOutbox.track`); the loop stores a batch's
offsets only when its ticket says all were acknowledged (at-least-once, see
:mod:`workers.inflight`).
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException, Producer

from runtime.kafka import client_config
from runtime.settings import KafkaSettings
from workers.inflight import BatchTicket

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
        self._ticket = BatchTicket(())

    def track(self, ticket: BatchTicket) -> None:
        """Count what is sent from now on against ``ticket`` (the batch being processed)."""
        self._ticket = ticket

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        ticket = self._ticket
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=ticket.on_durable)
                break
            except BufferError:
                # Local queue full: serve deliveries to make room (bounded by message.timeout.ms).
                self._producer.poll(0.05)
            except KafkaException as exc:
                # Refused before it was queued (e.g. a fatal producer error): the batch's outcome
                # is not durable, so its offsets must not be stored; the loop rewinds and retries.
                ticket.failures += 1
                ticket.last_error = str(exc)
                return
        ticket.outstanding += 1

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait for every acknowledgement (serving callbacks); returns how many are still missing."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
