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

from confluent_kafka import Producer

from runtime.kafka import client_config
from runtime.settings import KafkaSettings
from workers import metrics
from workers.inflight import BatchTicket

log = logging.getLogger(__name__)


class ReplySender:
    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self._producer = Producer(
            client_config(
                kafka,
                **{
                    "client.id": client_id,
                    "acks": 1,
                    "linger.ms": 0,
                    "message.timeout.ms": 10000,
                    # A reply topic deleted by a departed gateway must not stall us for long.
                    "topic.metadata.propagation.max.ms": 2000,
                },
            )
        )
        self._ticket = BatchTicket(())

    def track(self, ticket: BatchTicket) -> None:
        """Count what is sent from now on against ``ticket`` (the batch being processed)."""
        self._ticket = ticket

    def send(self, topic: str, request_id: str, value: bytes) -> None:
        ticket = self._ticket
        try:
            self._producer.produce(topic, value, request_id.encode(), on_delivery=ticket.on_reply)
        except BufferError:
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
        remaining = int(self._producer.flush(timeout_s))
        if remaining:
            log.warning("replies still unacknowledged", extra={"count": remaining})
        return remaining

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)
