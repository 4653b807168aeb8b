"""Reading and writing test topics with plain confluent-kafka clients (what an outside
producer or log consumer would do), with bounded waits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer
from pydantic import SecretStr

from runtime.kafka import committed_lag as kafka_lag
from runtime.settings import KafkaSettings


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    key: bytes | None = None,
    security: dict[str, str] | None = None,
) -> None:
    """``security``: librdkafka properties (SASL, SSL), as in the ``kafka.security`` setting."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **(security or {})})
    for value in values:
        producer.produce(topic, value, key)
    assert producer.flush(15) == 0, "messages not delivered"


def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 20.0,
    decode: bool = True,
    security: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``until(records)`` holds (or the timeout)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **(security or {}),
        }
    )
    consumer.subscribe([topic])
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(records):
            for message in consumer.consume(500, 0.2):
                value = message.value()
                if message.error() is None and value is not None:  # a tombstone carries no record
                    records.append(orjson.loads(value) if decode else {"raw": value})
    finally:
        consumer.close()
    return records


def committed_lag(bootstrap: str, group: str, topic: str, security: dict[str, str] | None = None) -> int:
    """Messages in ``topic`` not yet committed by ``group`` (all partitions)."""
    return kafka_lag(
        KafkaSettings(
            bootstrap_servers=bootstrap, security={k: SecretStr(v) for k, v in (security or {}).items()}
        ),
        group,
        topic,
    )
