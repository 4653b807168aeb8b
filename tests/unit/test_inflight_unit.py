"""Unit tests of the in-flight bookkeeping: offsets stored in order, never past a failed write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workers.inflight import BatchTicket, InFlight


@dataclass
class FakeMessage:
    """The three accessors the bookkeeping reads, like confluent_kafka.Message."""

    _partition: int
    _offset: int

    def topic(self) -> str:
        return "requests"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class Recorder:
    def __init__(self) -> None:
        self.stored: list[list[tuple[int, int]]] = []
        self.rewound: list[list[tuple[int, int]]] = []

    def store(self, messages: Sequence[object]) -> None:
        self.stored.append([(m.partition(), m.offset()) for m in messages])  # type: ignore[attr-defined]

    def rewind(self, messages: Sequence[object]) -> None:
        self.rewound.append([(m.partition(), m.offset()) for m in messages])  # type: ignore[attr-defined]


class FakeError:
    def str(self) -> str:
        return "Broker: Not enough in-sync replicas"


def ticket(*offsets: tuple[int, int], sends: int = 2) -> BatchTicket:
    made = BatchTicket([FakeMessage(p, o) for p, o in offsets])  # type: ignore[list-item]
    made.outstanding = sends
    return made


def deliver(made: BatchTicket, failed: bool = False) -> None:
    made.on_durable(FakeError() if failed else None, None)  # type: ignore[arg-type]


def test_batches_are_stored_in_consumption_order_only() -> None:
    recorder = Recorder()
    in_flight = InFlight(recorder.store, recorder.rewind)  # type: ignore[arg-type]
    first, second = ticket((0, 10), (1, 5)), ticket((0, 11))
    in_flight.add(first)
    in_flight.add(second)
    deliver(second)
    deliver(second)
    assert in_flight.settle() == (0, True)  # the second is done, but the first is not
    assert recorder.stored == []
    deliver(first)
    deliver(first)
    assert in_flight.settle() == (3, True)
    assert recorder.stored == [[(0, 10), (1, 5)], [(0, 11)]]
    assert len(in_flight) == 0


def test_a_failed_write_rewinds_every_unsettled_batch_and_stores_nothing_after_it() -> None:
    recorder = Recorder()
    in_flight = InFlight(recorder.store, recorder.rewind)  # type: ignore[arg-type]
    stored_first, failing, later = ticket((0, 1)), ticket((0, 2), (1, 7)), ticket((2, 9))
    for made in (stored_first, failing, later):
        in_flight.add(made)
    deliver(stored_first)
    deliver(stored_first)
    deliver(failing, failed=True)
    deliver(failing)
    deliver(later)
    deliver(later)
    assert in_flight.settle() == (1, False)
    assert recorder.stored == [[(0, 1)]]
    # The later batch succeeded but sits behind the failure: it is consumed again, never stored.
    assert recorder.rewound == [[(0, 2), (1, 7), (2, 9)]]
    assert len(in_flight) == 0


def test_an_undeliverable_reply_does_not_fail_the_batch() -> None:
    recorder = Recorder()
    in_flight = InFlight(recorder.store, recorder.rewind)  # type: ignore[arg-type]
    made = ticket((0, 3))

    class GoneTopic:
        def topic(self) -> str:
            return "rtml.replies.gone"

    in_flight.add(made)
    made.on_reply(FakeError(), GoneTopic())  # type: ignore[arg-type]
    deliver(made)
    assert in_flight.settle() == (1, True)
    assert recorder.rewound == []


def test_inside_a_revoke_a_failed_head_stays_queued_and_nothing_after_it_is_stored() -> None:
    recorder = Recorder()
    in_flight = InFlight(recorder.store, recorder.rewind)  # type: ignore[arg-type]
    stored_first, failing, later = ticket((0, 1)), ticket((0, 2)), ticket((0, 3))
    for made in (stored_first, failing, later):
        in_flight.add(made)
        deliver(made, failed=made is failing)
        deliver(made)
    # The revoke drain: store the good prefix, neither rewind nor drop the failure.
    assert in_flight.settle(rewind=False) == (1, False)
    assert recorder.stored == [[(0, 1)]] and recorder.rewound == [] and len(in_flight) == 2
    # The loop then adds the batch it was collecting and rewinds everything unsettled, that one too.
    current = ticket((0, 4))
    in_flight.add(current)
    assert in_flight.settle() == (0, False)
    assert recorder.rewound == [[(0, 2), (0, 3), (0, 4)]]
    assert recorder.stored == [[(0, 1)]]
