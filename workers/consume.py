"""The request consumer: opportunistic micro-batches in, offsets stored only after the outcome is durable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from runtime.kafka import EXACTLY_ONCE_CONSUMER, REQUEST_CONSUMER, new_consumer
from runtime.settings import KafkaSettings
from workers.lag import ConsumerLag

log = logging.getLogger(__name__)


class RequestConsumer:
    def __init__(
        self,
        kafka: KafkaSettings,
        group: str,
        topic: str,
        client_id: str,
        *,
        model: str,
        exactly_once: bool = False,
    ) -> None:
        # REQUEST_CONSUMER never stores an offset itself: store() below does, once the batch's
        # outcome is durable; the auto-committer commits only what was stored. With exactly_once
        # the offsets are committed by the producer's transaction instead.
        profile = EXACTLY_ONCE_CONSUMER if exactly_once else REQUEST_CONSUMER
        self._exactly_once = exactly_once
        self.lag = ConsumerLag(model, topic, read_committed=exactly_once)
        """rtml_worker_consumer_lag, from the statistics librdkafka hands over inside consume()."""
        self._consumer = new_consumer(
            kafka, profile, {"group.id": group, "client.id": client_id}, on_stats=self.lag.on_stats
        )
        self._consumer.subscribe([topic], on_revoke=self._on_revoke)
        self.topic = topic
        self.before_revoke: Callable[[], object] = lambda: None
        """Set by the loop: settle batches in flight (their offsets get stored) before a revoke."""

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Settle what is in flight, then commit what is stored, before another member takes
        # these partitions over (else it serves the unsettled batches again).
        self.before_revoke()
        if self._exactly_once:
            return  # committed with each batch's transaction; nothing is ever stored here
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            log.debug("nothing to commit on revoke", extra={"error": str(exc)})

    def next_batch(self, max_messages: int, poll_timeout_s: float, max_delay_s: float) -> list[Message]:
        """Block for the first message, then take what is already fetched (and, with a
        delay, what arrives until ``max_delay_s`` after the first message)."""
        batch = self._consumer.consume(1, poll_timeout_s)
        if not batch:
            return []
        if max_messages > 1:
            batch.extend(self._consumer.consume(max_messages - 1, 0))
        if max_delay_s > 0:
            deadline = time.monotonic() + max_delay_s
            while len(batch) < max_messages and (remaining := deadline - time.monotonic()) > 0:
                batch.extend(self._consumer.consume(max_messages - len(batch), remaining))
        return [message for message in batch if not self._is_error(message)]

    @staticmethod
    def _is_error(message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        log.warning("consume error", extra={"error": error.str(), "topic": message.topic()})
        return True

    def store(self, messages: Sequence[Message]) -> None:
        """Mark the batch done; the next auto-commit (or close/revoke) commits it."""
        try:
            self._consumer.store_offsets(offsets=_next_offsets(messages, max))
        except KafkaException as exc:
            # A partition lost without a revoke (session timeout): its new owner serves the
            # batch again, which at-least-once allows.
            log.warning("offsets not stored", extra={"error": str(exc)})

    def rewind(self, messages: Sequence[Message]) -> None:
        """Re-read the batches: their outcome did not become durable."""
        for partition in _next_offsets(messages, min):
            partition.offset -= 1
            try:
                self._consumer.seek(partition)
            except KafkaException as exc:
                # No longer ours: the new owner starts from the last committed offset, which is
                # at or before these messages, so they are served again there.
                log.warning("rewind skipped", extra={"partition": partition.partition, "error": str(exc)})

    def transaction_offsets(self, messages: Sequence[Message]) -> list[TopicPartition]:
        """What a transaction commits for ``messages``: per partition, the offset after the last."""
        return _next_offsets(messages, max)

    def group_metadata(self) -> object:
        """For send_offsets_to_transaction: fences a zombie worker by the group's generation."""
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        self._consumer.close()  # commits stored offsets and leaves the group
        self.lag.close()  # a stopped loop holds no partitions: its lag series go


def _next_offsets(messages: Sequence[Message], pick: Callable[[int, int], int]) -> list[TopicPartition]:
    """Per partition, the offset after the highest (pick=max) or lowest (pick=min) message."""
    offsets: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (str(message.topic()), int(message.partition() or 0))
        offset = int(message.offset() or 0)
        offsets[key] = pick(offsets.get(key, offset), offset)
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in offsets.items()]
