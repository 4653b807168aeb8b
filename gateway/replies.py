"""Reply routing: each gateway instance owns one reply topic, read with a manual assignment.

Why not a shared reply topic with a consumer group: a group rebalances whenever
a gateway starts or stops, and during a rebalance replies land on partitions
nobody (or the wrong instance) reads, so they are lost. An owned topic has no
group and no rebalance: a reply goes to exactly the instance that waits for it.

Pending requests are futures keyed by correlation id (the request id): register
before publishing, await under the deadline, discard in ``finally``. A reply message
is a PredictReplyBatch (one worker batch's replies for this gateway); it is parsed on
the consumer thread and each reply handed to its waiter on the event loop, all in one
loop callback. Replies without a waiter (late, or for a request that timed out) are
dropped and counted. If the consumer thread dies, every waiter is failed at once
instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from gateway import metrics
from runtime.errors import Unavailable
from runtime.kafka import REPLY_CONSUMER, ensure_topics, new_consumer, reply_topic
from runtime.memory import trim_heap
from runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

TRIM_AFTER_IDLE_S = 2.0
IDLE_WAKE_S = 0.5
"""Longest the reply consumer blocks without a reply (issue 9: idle CPU); replies end it at once."""

TOPIC_CHECK_S = 10.0
"""How often the reply consumer checks that its topic still exists (one metadata request)."""
TOPIC_GONE = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)

Reply = dict[str, Any]
"""One PredictReply, parsed."""
Pending = dict[bytes, "asyncio.Future[Reply]"]


class ReplyRouter:
    def __init__(self, kafka: KafkaSettings, topic: str, instance_id: str) -> None:
        self.topic = topic
        self._kafka = kafka
        self._instance_id = instance_id
        # group.id is required by librdkafka, but never used to join or commit: we assign manually.
        self._ids = {"group.id": f"rtml.gateway.{instance_id}", "client.id": f"{instance_id}-replies"}
        self._pending: Pending = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._assigned = threading.Event()
        self.failure: str | None = None

    @property
    def ready(self) -> bool:
        return self._assigned.is_set() and self._thread is not None and self._thread.is_alive()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def start(self, loop: asyncio.AbstractEventLoop, timeout_s: float = 15.0) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="reply-consumer", daemon=True)
        self._thread.start()
        if not self._assigned.wait(timeout_s):
            raise Unavailable(
                f"reply consumer could not be assigned {self.topic}: {self.failure or 'timeout'}"
            )

    def register(self, correlation_id: bytes) -> asyncio.Future[Reply]:
        if correlation_id in self._pending:
            raise KeyError(correlation_id)
        assert self._loop is not None
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[correlation_id] = future
        return future

    def discard(self, correlation_id: bytes) -> None:
        self._pending.pop(correlation_id, None)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        try:
            consumer = self._assign()
        except Exception as exc:
            self.failure = str(exc)
            log.exception("reply consumer failed to start")
            return
        try:
            self._consume(consumer)
        except Exception as exc:
            self.failure = str(exc)
            log.exception("reply consumer died; failing every pending request")
        finally:
            self._assigned.clear()
            self._call_soon(self._fail_all, self.failure or "gateway shutting down")
            consumer.close()

    def _assign(self) -> Consumer:
        consumer = new_consumer(self._kafka, REPLY_CONSUMER, self._ids)
        deadline = time.monotonic() + 15.0
        while True:
            try:
                partitions = self._end_offsets(consumer)
                break
            except (KafkaException, RuntimeError):
                # A just-created topic needs a moment for metadata and leadership to settle.
                if time.monotonic() > deadline:
                    consumer.close()
                    raise
                time.sleep(0.1)
        consumer.assign(partitions)
        # Logged before start() is released: after it, the caller may already be shutting down
        # (in tests, pytest has closed the stream this log line would go to).
        log.info("reply consumer assigned", extra={"topic": self.topic, "partitions": len(partitions)})
        self._assigned.set()
        return consumer

    def _end_offsets(self, consumer: Consumer) -> list[TopicPartition]:
        """Each partition at its current end, explicitly: no reply produced after this can be skipped."""
        metadata = consumer.list_topics(self.topic, timeout=5.0).topics[self.topic]
        if metadata.error is not None or not metadata.partitions:
            raise RuntimeError(f"reply topic {self.topic}: {metadata.error}")
        partitions = []
        for partition in metadata.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=5.0)
            partitions.append(TopicPartition(self.topic, partition, high))
        return partitions

    def _consume(self, consumer: Consumer) -> None:
        last_reply, trimmed = time.monotonic(), True
        checked = time.monotonic()
        while not self._stopping.is_set():
            if time.monotonic() - checked > TOPIC_CHECK_S:
                checked = time.monotonic()
                self._recreate_if_deleted(consumer)
            # consume(n, timeout) waits for all n or the timeout: block for the first reply
            # only, then take whatever else has already arrived. A reply ends the wait at once;
            # the timeout only sets how often an idle gateway wakes (and how long stop() waits).
            messages = consumer.consume(1, IDLE_WAKE_S)
            if messages:
                messages.extend(consumer.consume(999, 0))
            if any((error := m.error()) is not None and error.code() in TOPIC_GONE for m in messages):
                self._recreate_if_deleted(consumer)
            replies = [reply for m in messages if m.error() is None for reply in _replies_in(m)]
            if replies:
                self._call_soon(self._resolve, replies)
                last_reply, trimmed = time.monotonic(), False
            elif not trimmed and time.monotonic() - last_reply > TRIM_AFTER_IDLE_S:
                # Quiet after a burst: give the burst's freed heap back (runtime/memory.py).
                trim_heap()
                trimmed = True

    def _recreate_if_deleted(self, consumer: Consumer) -> None:
        """Someone deleted our reply topic: every reply would be lost while /ready said 200. Say
        not ready, create it again, and read it from its (new) end."""
        try:
            topic = consumer.list_topics(self.topic, timeout=5.0).topics.get(self.topic)
        except KafkaException:
            return  # the broker is unreachable: the producer's health reports that
        if topic is not None and topic.error is None and topic.partitions:
            return
        self._assigned.clear()
        self.failure = f"reply topic {self.topic} was deleted; re-creating it"
        log.error("reply topic deleted; re-creating it", extra={"topic": self.topic})
        ensure_topics(self._kafka, [reply_topic(self._kafka, self._instance_id)])
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                consumer.assign(self._end_offsets(consumer))
            except (KafkaException, RuntimeError):
                time.sleep(0.2)
                continue
            self.failure = None
            self._assigned.set()
            log.info("reply topic re-created", extra={"topic": self.topic})
            return

    def _call_soon(self, callback: object, argument: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, argument)  # type: ignore[arg-type]

    def _resolve(self, replies: list[tuple[bytes, Reply]]) -> None:
        for key, reply in replies:
            future = self._pending.get(key)
            if future is None or future.done():
                metrics.LATE_REPLIES.inc()
                continue
            future.set_result(reply)

    def fail(self, correlation_id: bytes, error: Exception) -> None:
        """Fail one waiter (called on the event loop, e.g. when its request was never delivered)."""
        future = self._pending.get(correlation_id)
        if future is not None and not future.done():
            future.set_exception(error)

    def _fail_all(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable(f"reply consumer stopped: {reason}"))
                # A waiter that already gave up never reads it; asyncio would log it as lost.
                future.add_done_callback(_mark_retrieved)


def _mark_retrieved(future: asyncio.Future[Reply]) -> None:
    future.exception()


def _correlation(reply: Reply) -> bytes:
    return str(reply.get("correlation_id") or reply["request_id"]).encode()


def _replies_in(message: Message) -> list[tuple[bytes, Reply]]:
    """(correlation id, reply) for every reply a message carries; nothing for a malformed one."""
    value = message.value()
    try:
        parsed: Any = orjson.loads(value or b"null")
        replies: list[Reply] = parsed["replies"] if parsed.get("kind") == "reply_batch" else [parsed]
        # Matched by the gateway's own correlation id; a reply without one (a worker from before
        # it) by request_id.
        return [(_correlation(reply), reply) for reply in replies]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        metrics.LATE_REPLIES.inc()  # counted with the unanswerable ones
        log.warning("malformed reply message", extra={"offset": message.offset()})
        return []
