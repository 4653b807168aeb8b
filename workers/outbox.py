"""Durable output of a worker loop: the prediction log and dead letters.

Idempotent producer with acks=all. Every message counts against the ticket of the
batch being processed (:meth:`DurableOutbox.track`); the loop stores a batch's
offsets only when its ticket says all were acknowledged (at-least-once, see
:mod:`workers.inflight`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import KafkaException

from runtime.kafka import DURABLE_PRODUCER, KafkaProducer, QueueFull
from runtime.settings import KafkaSettings
from workers.inflight import BatchTicket


class Outbox(Protocol):
    """Where a batch's log records and dead letters go (DurableOutbox, or TransactionalOutbox)."""

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None: ...

    def send_many(self, topic: str, values: Sequence[bytes], key: bytes | None = None) -> None:
        """``send`` of each of ``values``, in order, with one key (one request's log records)."""
        ...


class DurableOutbox:
    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self._producer = KafkaProducer(kafka, DURABLE_PRODUCER, {"client.id": client_id})
        self.delivery_timeout_s = self._producer.delivery_timeout_s
        """Every write is acknowledged or reported failed within this long."""
        self._ticket = BatchTicket(())

    def track(self, ticket: BatchTicket) -> None:
        """Count what is sent from now on against ``ticket`` (the batch being processed)."""
        self._ticket = ticket

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        ticket = self._ticket
        try:
            # A full local queue is waited out (up to the delivery timeout) by the producer.
            self._producer.produce(topic, value, key, on_delivery=ticket.on_durable)
        except (KafkaException, QueueFull) as exc:
            # Not queued (a fatal producer error, or a queue that never drained): the batch's
            # outcome is not durable, so its offsets must not be stored; the loop rewinds and retries.
            ticket.failures += 1
            ticket.last_error = str(exc)
            return
        ticket.outstanding += 1

    def send_many(self, topic: str, values: Sequence[bytes], key: bytes | None = None) -> None:
        ticket = self._ticket
        produce, on_durable = self._producer.produce, ticket.on_durable
        for value in values:  # one frame for a request's rows: this is the hot loop of direct load
            try:
                produce(topic, value, key, on_delivery=on_durable)
            except (KafkaException, QueueFull) as exc:  # as in send()
                ticket.failures += 1
                ticket.last_error = str(exc)
                continue
            ticket.outstanding += 1

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait for every acknowledgement (serving callbacks); returns how many are still missing."""
        return self._producer.flush(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
