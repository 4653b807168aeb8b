"""RequestCoalescer: requests for one model made in one loop iteration leave in one message,
never larger than the limits, and a refused message fails exactly its own requests."""

from __future__ import annotations

import asyncio

from gateway.coalesce import RequestCoalescer
from runtime.errors import RtmlError, Unavailable
from schemas.messages import PredictRequestBatch
from schemas.wire import encode_request
from tests.unit.gateway_fakes import FakeProducer, acknowledge


def encoded(request_id: str, model: str = "m") -> bytes:
    return encode_request(
        request_id=request_id, model=model, version="1", features=[[1.0, 2.0]], reply_to="rtml.replies.g",
        deadline_ms=None, use_cache=True, source="http", sent_at_ms=None,
    )  # fmt: skip


class Harness:
    def __init__(
        self,
        max_bytes: int = 1_000_000,
        max_requests: int = 4096,
        busy_delay_s: float = 0.0,
        busy: bool = False,
    ) -> None:
        self.busy = busy
        self.producer = FakeProducer()
        self.delivered: list[bytes] = []
        self.failed: dict[bytes, RtmlError] = {}
        self.coalescer = RequestCoalescer(
            self.producer,  # type: ignore[arg-type]
            lambda model: f"rtml.requests.{model}",
            delivered=self.delivered.extend,
            fail=lambda ids, error: self.failed.update(dict.fromkeys(ids, error)),
            max_message_bytes=max_bytes,
            max_requests=max_requests,
            busy_delay_s=busy_delay_s,
            busy=lambda: self.busy,
        )
        self.coalescer.bind_loop(asyncio.get_running_loop())

    def sent(self) -> list[tuple[str, list[str]]]:
        return [
            (m.topic, [r.request_id for r in PredictRequestBatch.model_validate_json(m.value).requests])
            for m in self.producer.produced
        ]


async def test_one_iteration_one_message_per_model() -> None:
    h = Harness()
    for i in range(5):
        h.coalescer.add("m", f"a{i}".encode(), encoded(f"a{i}"))
    h.coalescer.add("n", b"b0", encoded("b0", "n"))
    assert h.producer.produced == []  # not before the loop iteration ends
    await asyncio.sleep(0)
    assert h.sent() == [("rtml.requests.m", [f"a{i}" for i in range(5)]), ("rtml.requests.n", ["b0"])]
    h.coalescer.add("m", b"later", encoded("later"))  # a later iteration: a message of its own
    await asyncio.sleep(0)
    assert h.sent()[-1] == ("rtml.requests.m", ["later"])
    for message in h.producer.produced:
        acknowledge(message)
    assert sorted(h.delivered) == sorted([f"a{i}".encode() for i in range(5)] + [b"b0", b"later"])


async def test_messages_stay_within_the_size_and_count_limits() -> None:
    one = len(encoded("r00"))
    h = Harness(max_bytes=3 * one + 60)
    for i in range(10):
        h.coalescer.add("m", f"r{i:02d}".encode(), encoded(f"r{i:02d}"))
    await asyncio.sleep(0)
    sizes = [len(m.value) for m in h.producer.produced]
    assert all(size <= 3 * one + 60 for size in sizes)
    assert [i for _t, ids in h.sent() for i in ids] == [f"r{i:02d}" for i in range(10)]
    h = Harness(max_requests=4)
    for i in range(10):
        h.coalescer.add("m", f"r{i}".encode(), encoded(f"r{i}"))
    await asyncio.sleep(0)
    assert [len(ids) for _t, ids in h.sent()] == [4, 4, 2]


async def test_a_refused_or_failed_message_fails_its_own_requests() -> None:
    h = Harness()
    h.producer.refuse = BufferError("queue full")
    h.coalescer.add("m", b"x", encoded("x"))
    h.coalescer.add("m", b"y", encoded("y"))
    await asyncio.sleep(0)
    assert set(h.failed) == {b"x", b"y"} and isinstance(h.failed[b"x"], Unavailable)
    assert "queue is full" in h.failed[b"x"].message


async def test_under_load_a_message_waits_for_company_and_idle_never_waits() -> None:
    h = Harness(busy_delay_s=0.05, busy=True)
    h.coalescer.add("m", b"first", encoded("first"))
    await asyncio.sleep(0)
    assert h.producer.produced == []  # busy: held for the delay, not sent at the iteration's end
    await asyncio.sleep(0.01)
    h.coalescer.add("m", b"second", encoded("second"))  # a later iteration joins the same message
    await asyncio.sleep(0.1)
    assert h.sent() == [("rtml.requests.m", ["first", "second"])]

    h.busy = False  # lightly loaded: sent at the end of the iteration, as without a delay
    h.coalescer.add("m", b"alone", encoded("alone"))
    await asyncio.sleep(0)
    assert h.sent()[-1] == ("rtml.requests.m", ["alone"])
