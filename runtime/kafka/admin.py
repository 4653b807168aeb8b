"""Topic creation and deletion, and consumer-group lag, through the ADMIN and LAG_PROBE profiles."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.cimpl import NewTopic

from runtime.kafka.clients import new_admin, new_consumer
from runtime.kafka.profiles import LAG_PROBE
from runtime.kafka.topics import TopicSpec
from runtime.settings import KafkaSettings

log = logging.getLogger("runtime.kafka")


def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec], timeout_s: float = 15.0) -> None:
    """Create the topics of ``specs`` that do not exist yet (the one place rtml creates topics)."""
    wanted = {spec.name: spec for spec in specs}
    foreign = sorted(name for name, spec in wanted.items() if spec.created_by != "rtml")
    if foreign:
        raise ValueError(f"not created by rtml: {', '.join(foreign)}")
    if not wanted:
        return
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=kafka.replication_factor,
            config=s.config(),
        )
        for s in wanted.values()
    ]
    admin = new_admin(kafka)  # referenced until every future is done: its handle must outlive them
    futures = admin.create_topics(new, request_timeout=timeout_s, operation_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise
        log.info("created topic", extra={"topic": name})


def delete_topics(kafka: KafkaSettings, names: list[str], timeout_s: float = 10.0) -> None:
    """Delete ``names``; a failure is logged, not raised (shutdown paths call this)."""
    if not names:
        return
    admin = new_admin(kafka)
    for name, future in admin.delete_topics(names, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            log.warning("could not delete topic", extra={"topic": name, "error": str(exc)})


def committed_lag(kafka: KafkaSettings, group: str, topic: str, timeout_s: float = 10.0) -> int:
    """Messages of ``topic`` (all partitions) not yet committed by consumer ``group``: what an
    autoscaler or a drain check watches."""
    consumer = new_consumer(kafka, LAG_PROBE, {"group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s)
        lag = 0
        for partition in committed:
            _low, high = consumer.get_watermark_offsets(partition, timeout=timeout_s)
            lag += high - max(partition.offset, 0)  # no commit yet: everything is lag
        return int(lag)
    finally:
        consumer.close()
