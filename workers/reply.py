"""Replies to gateways: latency first.

A reply is useful only while its gateway still waits, so this producer favours
latency (acks=1, no linger). The loop waits for the batch's replies to be
acknowledged before storing offsets (:meth:`ReplySender.flush`), but a reply that
cannot be delivered (its gateway is gone) is counted and dropped rather than
retried: the durable record of every prediction is the prediction log.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, Message, Producer

from rtml.kafka import client_config
from rtml.settings import KafkaSettings
from workers import metrics

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

    @staticmethod
    def _on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            metrics.REPLY_ERRORS.inc()
            log.debug("reply not delivered", extra={"topic": message.topic(), "error": error.str()})

    def send(self, topic: str, request_id: str, value: bytes) -> None:
        try:
            self._producer.produce(topic, value, request_id.encode(), on_delivery=self._on_delivery)
        except BufferError:
            metrics.REPLY_ERRORS.inc()
        except Exception as exc:  # e.g. KafkaException for a topic name librdkafka refuses
            metrics.REPLY_ERRORS.inc()
            log.warning("reply rejected", extra={"topic": topic, "error": str(exc)})

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        """Wait until this batch's replies are acknowledged (or failed and counted)."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("replies still unacknowledged", extra={"count": remaining})

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)
