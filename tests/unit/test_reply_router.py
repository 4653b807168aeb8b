"""ReplyRouter in-process, its consumer replaced by an in-memory one (gateway_fakes): replies reach
their own waiter, late ones are dropped and counted, and no waiter outlives the consumer.
The same against a real broker: tests/integration/test_reply_router.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from gateway import replies as replies_module
from gateway.replies import ReplyRouter
from runtime.errors import Unavailable
from runtime.settings import load_settings
from tests.unit.gateway_fakes import FakeReplyConsumer

TOPIC = "rtml.replies.unit-gw"


def reply(cid: bytes, text: str) -> dict[str, Any]:
    return {"request_id": cid.decode(), "ok": True, "predictions": [text]}


def batch(*replies: dict[str, Any]) -> bytes:
    """A PredictReplyBatch, as workers send them (the router reads only these fields)."""
    return orjson.dumps({"schema_version": 1, "kind": "reply_batch", "replies": list(replies)})


def late_replies() -> float:
    return REGISTRY.get_sample_value("rtml_gateway_late_replies_total") or 0.0


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> FakeReplyConsumer:
    fake = FakeReplyConsumer(TOPIC)
    monkeypatch.setattr(replies_module, "new_consumer", lambda *args, **kwargs: fake)
    return fake


@pytest.fixture
async def router(consumer: FakeReplyConsumer) -> AsyncIterator[ReplyRouter]:
    router = ReplyRouter(load_settings().kafka, TOPIC, "unit-gw")
    await asyncio.to_thread(router.start, asyncio.get_running_loop(), 5.0)
    yield router
    await asyncio.to_thread(router.stop)


async def settle(*futures: asyncio.Future[Any], timeout_s: float = 5.0) -> None:
    await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout_s)


async def test_start_assigns_the_reply_topic_at_its_end(
    router: ReplyRouter, consumer: FakeReplyConsumer
) -> None:
    assert router.ready and router.in_flight == 0
    assert [(tp.topic, tp.partition, tp.offset) for tp in consumer.assigned] == [(TOPIC, 0, 0)]


async def test_each_reply_reaches_its_own_waiter(router: ReplyRouter, consumer: FakeReplyConsumer) -> None:
    ids = [f"req-{i}".encode() for i in range(5)]
    futures = {cid: router.register(cid) for cid in ids}
    consumer.deliver(None, batch(*(reply(cid, f"to {cid!r}") for cid in reversed(ids[2:]))))
    for cid in reversed(ids[:2]):  # in another order than registered, and in other messages
        consumer.deliver(None, batch(reply(cid, f"to {cid!r}")))
    await settle(*futures.values())
    assert {cid: future.result()["predictions"] for cid, future in futures.items()} == {
        cid: [f"to {cid!r}"] for cid in ids
    }
    for cid in ids:
        router.discard(cid)
    assert router.in_flight == 0


async def test_late_and_unknown_replies_are_dropped_and_counted(
    router: ReplyRouter, consumer: FakeReplyConsumer
) -> None:
    before = late_replies()
    waiting = router.register(b"waiting")
    gone = router.register(b"gone")
    router.discard(b"gone")  # its request timed out: the service discards it in `finally`
    consumer.deliver(None, batch(reply(b"gone", "too late"), reply(b"never-asked", "stray")))
    consumer.deliver(None, b"not a reply")  # malformed: counted with them
    consumer.deliver(None, batch(reply(b"waiting", "in time")))
    await settle(waiting)
    assert waiting.result()["predictions"] == ["in time"] and not gone.done()
    assert late_replies() - before == 3


async def test_a_second_reply_for_one_request_is_counted_late(
    router: ReplyRouter, consumer: FakeReplyConsumer
) -> None:
    before = late_replies()
    future = router.register(b"twice")
    consumer.deliver(None, batch(reply(b"twice", "first")))
    consumer.deliver(None, batch(reply(b"twice", "second")))
    await settle(future)
    for _ in range(50):  # both replies come in one batch or two: wait for the second to be seen
        if late_replies() - before == 1:
            break
        await asyncio.sleep(0.02)
    assert future.result()["predictions"] == ["first"] and late_replies() - before == 1


async def test_a_correlation_id_in_flight_cannot_be_registered_twice(router: ReplyRouter) -> None:
    router.register(b"dup")
    with pytest.raises(KeyError):
        router.register(b"dup")
    router.discard(b"dup")
    router.register(b"dup")  # free again once discarded


async def test_a_dead_consumer_fails_every_waiter(router: ReplyRouter, consumer: FakeReplyConsumer) -> None:
    futures = [router.register(f"w{i}".encode()) for i in range(3)]
    consumer.die()
    await settle(*futures)
    for future in futures:
        with pytest.raises(Unavailable, match=r"reply consumer stopped: .*broker connection lost"):
            future.result()
    for _ in range(100):  # the waiters are failed first, then the consumer is closed
        if consumer.closed:
            break
        await asyncio.sleep(0.01)
    assert not router.ready and router.failure is not None and consumer.closed


async def test_stopping_fails_the_waiters_left(router: ReplyRouter) -> None:
    future = router.register(b"left")
    await asyncio.to_thread(router.stop)
    await settle(future)
    with pytest.raises(Unavailable, match="gateway shutting down"):
        future.result()


async def test_a_consumer_that_cannot_start_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> FakeReplyConsumer:
        raise ValueError("bootstrap.servers is malformed")

    monkeypatch.setattr(replies_module, "new_consumer", refuse)
    router = ReplyRouter(load_settings().kafka, TOPIC, "unit-gw")
    with pytest.raises(Unavailable, match=f"could not be assigned {TOPIC}: bootstrap.servers is malformed"):
        await asyncio.to_thread(router.start, asyncio.get_running_loop(), 0.5)
    assert not router.ready
