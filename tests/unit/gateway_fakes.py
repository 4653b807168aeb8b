"""In-memory stand-ins for the gateway's edges (the reply consumer, the request producer, the
Redis cache), so :class:`~gateway.service.PredictionService` and
:class:`~gateway.replies.ReplyRouter` run in-process without a socket. The real edges are
covered in tests/integration (test_reply_router.py and the stack tests)."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from runtime.kafka import BrokerHealth

Delivery = Callable[[KafkaError | None, Message], None]


class FakeReplyConsumer:
    """What ReplyRouter asks of a consumer: one partition's end offset, assignment, consume.

    :meth:`deliver` hands it replies (as a broker would); :meth:`die` makes the next
    ``consume`` raise, as a consumer whose client failed would."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.assigned: list[TopicPartition] = []
        self.closed = False
        self._inbox: queue.Queue[Message | BaseException] = queue.Queue()

    def deliver(self, key: bytes | None, value: bytes | None) -> None:
        self._inbox.put(Message(topic=self.topic, partition=0, key=key, value=value))

    def die(self, error: BaseException | None = None) -> None:
        self._inbox.put(error or KafkaException(KafkaError(KafkaError._TRANSPORT, "broker connection lost")))

    def list_topics(self, topic: str, timeout: float) -> Any:
        metadata = SimpleNamespace(error=None, partitions={0: SimpleNamespace(id=0)})
        return SimpleNamespace(topics={topic: metadata})

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        messages: list[Message] = []
        try:
            item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
            while True:
                if isinstance(item, BaseException):
                    raise item
                messages.append(item)
                if len(messages) >= num_messages:
                    break
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass
        return messages

    def close(self) -> None:
        self.closed = True


@dataclass
class Produced:
    topic: str
    value: bytes
    key: bytes | None
    on_delivery: Delivery | None
    headers: list[tuple[str, str | bytes | None]] | None = None


@dataclass
class FakeProducer:
    """Records what is produced. ``on_produce`` (if set) sees each message as it is enqueued:
    tests use it to acknowledge, fail or answer a request; ``refuse`` raises instead (a full queue)."""

    health: BrokerHealth = field(default_factory=lambda: BrokerHealth("fake-producer"))
    produced: list[Produced] = field(default_factory=list)
    on_produce: Callable[[Produced], None] | None = None
    refuse: BaseException | None = None

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        on_delivery: Delivery | None = None,
        max_wait_s: float | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        if self.refuse is not None:
            raise self.refuse
        message = Produced(topic, value, key, on_delivery, headers)
        self.produced.append(message)
        if self.on_produce is not None:
            self.on_produce(message)

    def to(self, topic: str) -> list[Produced]:
        return [message for message in self.produced if message.topic == topic]


@dataclass
class FakeCache:
    """The gateway cache's read path over a dict."""

    stored: dict[str, bytes] = field(default_factory=dict)
    prefix: str = "unit:p:"
    available: bool = True
    reads: list[str] = field(default_factory=list)

    async def get(self, key: str) -> bytes | None:
        self.reads.append(key)
        return self.stored.get(key)


def acknowledge(message: Produced, error: KafkaError | None = None) -> None:
    """Call the message's delivery report as the producer's poll thread would."""
    assert message.on_delivery is not None
    message.on_delivery(error, Message(topic=message.topic, key=message.key, value=message.value))
