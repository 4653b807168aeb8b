"""Replies to gateways: latency first.

A reply is useful only while its gateway still waits, so this producer favours
latency (acks=1, no linger). A batch's offsets are stored only after its replies
have been acknowledged too (they count against the batch's ticket, see
:mod:`workers.inflight`), but a reply that cannot be delivered (its gateway is
gone) is counted and dropped rather than retried: the durable record of every
prediction is the prediction log.
"""

from __future__ import annotations

import logging

from runtime.kafka import REPLY_PRODUCER, KafkaProducer, QueueFull
from runtime.settings import KafkaSettings
from workers import metrics
from workers.inflight import BatchTicket

log = logging.getLogger(__name__)


class ReplySender:
    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self._producer = KafkaProducer(kafka, REPLY_PRODUCER, {"client.id": client_id})
        self.delivery_timeout_s = self._producer.delivery_timeout_s
        """Every reply is acknowledged or reported failed within this long."""
        self._ticket = BatchTicket(())

    def track(self, ticket: BatchTicket) -> None:
        """Count what is sent from now on against ``ticket`` (the batch being processed)."""
        self._ticket = ticket

    def send(self, topic: str, value: bytes) -> None:
        """One PredictReplyBatch (its gateway finds each waiter by the request ids inside)."""
        ticket = self._ticket
        try:
            self._producer.produce(topic, value, None, on_delivery=ticket.on_reply)
        except QueueFull:  # REPLY_PRODUCER does not wait for room: drop the reply, count it
            metrics.REPLY_ERRORS.inc()
            return
        except Exception as exc:  # e.g. KafkaException for a topic name librdkafka refuses
            metrics.REPLY_ERRORS.inc()
            log.warning("reply rejected", extra={"topic": topic, "error": str(exc)})
            return
        ticket.outstanding += 1

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait for every acknowledgement (serving callbacks); returns how many are still missing."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("replies still unacknowledged", extra={"count": remaining})
        return remaining

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)
