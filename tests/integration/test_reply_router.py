"""ReplyRouter in-process against the real broker: replies produced to its topic reach the right
waiter, late ones are dropped and counted, and a consumer that dies fails every waiter.
(The same logic with an in-memory consumer: tests/unit/test_reply_router.py.)"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from gateway import replies as replies_module
from gateway.replies import ReplyRouter
from runtime.errors import Unavailable
from runtime.kafka import delete_topics, ensure_topics, reply_topic
from runtime.settings import load_settings
from tests.kafka_tools import produce


class DyingConsumer:
    """The real reply consumer, except that ``consume`` raises once :attr:`dead` is set."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.dead = threading.Event()

    def consume(self, num_messages: int, timeout: float) -> Any:
        if self.dead.is_set():
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "injected: connection lost"))
        return self._inner.consume(num_messages, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class Routed:
    router: ReplyRouter
    bootstrap: str
    consumer: DyingConsumer

    def reply(self, key: bytes, text: str) -> None:
        """One PredictReplyBatch holding one reply to ``key``, as a worker sends it."""
        reply = {"request_id": key.decode(), "ok": True, "predictions": [text]}
        value = orjson.dumps({"schema_version": 1, "kind": "reply_batch", "replies": [reply]})
        produce(self.bootstrap, self.router.topic, [value], None)


@pytest.fixture
async def routed(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Routed]:
    tag = uuid.uuid4().hex[:8]
    kafka = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "reply_topic_prefix": f"t{tag}.replies."}
    ).kafka
    spec = reply_topic(kafka, f"gw-{tag}")
    await asyncio.to_thread(ensure_topics, kafka, [spec])
    made: list[DyingConsumer] = []
    real_new_consumer = replies_module.new_consumer

    def dying(*args: Any, **kwargs: Any) -> DyingConsumer:
        made.append(DyingConsumer(real_new_consumer(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(replies_module, "new_consumer", dying)
    router = ReplyRouter(kafka, spec.name, f"gw-{tag}")
    await asyncio.to_thread(router.start, asyncio.get_running_loop(), 30.0)
    try:
        yield Routed(router, kafka_bootstrap, made[0])
    finally:
        await asyncio.to_thread(router.stop)
        await asyncio.to_thread(delete_topics, kafka, [spec.name])


def late_replies() -> float:
    return REGISTRY.get_sample_value("rtml_gateway_late_replies_total") or 0.0


async def test_replies_reach_their_own_waiter(routed: Routed) -> None:
    assert routed.router.ready
    ids = [f"req-{i}".encode() for i in range(10)]
    futures = {cid: routed.router.register(cid) for cid in ids}
    for cid in reversed(ids):
        await asyncio.to_thread(routed.reply, cid, f"answer to {cid!r}")
    await asyncio.wait_for(asyncio.gather(*futures.values()), 20)
    assert {cid: f.result()["predictions"] for cid, f in futures.items()} == {
        cid: [f"answer to {cid!r}"] for cid in ids
    }


async def test_late_replies_are_dropped_and_counted(routed: Routed) -> None:
    before = late_replies()
    gone = routed.router.register(b"gone")
    routed.router.discard(b"gone")
    waiting = routed.router.register(b"waiting")
    await asyncio.to_thread(routed.reply, b"gone", "too late")
    await asyncio.to_thread(routed.reply, b"stranger", "nobody asked")
    await asyncio.to_thread(routed.reply, b"waiting", "in time")  # same partition: read after the others
    assert (await asyncio.wait_for(waiting, 20))["predictions"] == ["in time"]
    assert late_replies() - before == 2 and not gone.done()


async def test_a_dead_consumer_fails_every_waiter(routed: Routed) -> None:
    futures = [routed.router.register(f"w{i}".encode()) for i in range(3)]
    routed.consumer.dead.set()
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 10)
    assert all(isinstance(r, Unavailable) and "injected: connection lost" in str(r) for r in results), results
    assert not routed.router.ready
