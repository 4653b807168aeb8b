"""Batches whose outcome is on its way to the broker, and when their offsets may be stored.

The loop does not wait for acknowledgements after each batch (that wait was 40% of
a worker's time): it hands the batch's log records, dead letters and replies to the
producers, starts the next batch, and stores a batch's offsets once every one of its
messages has been acknowledged, strictly in consumption order. Delivery callbacks run
on the worker's own thread (inside ``poll``/``flush``), so nothing here needs a lock.

A durable write that fails (log or dead letter) rewinds the consumer to the oldest
unsettled batch and drops every batch after it: they are consumed and served again
(at-least-once; duplicates carry the same request id).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, Message

from workers import metrics

log = logging.getLogger(__name__)


class BatchTicket:
    """Deliveries still outstanding for one consumed batch."""

    __slots__ = ("failures", "last_error", "messages", "on_durable", "on_reply", "outstanding")

    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = messages
        self.outstanding = 0
        self.failures = 0
        self.last_error: str | None = None
        # Bound once: librdkafka keeps one callback reference per produced message.
        self.on_durable: Callable[[KafkaError | None, Message], None] = self._on_durable
        self.on_reply: Callable[[KafkaError | None, Message], None] = self._on_reply

    @property
    def done(self) -> bool:
        return self.outstanding == 0

    @property
    def ok(self) -> bool:
        return self.failures == 0

    def _on_durable(self, error: KafkaError | None, _message: Message) -> None:
        self.outstanding -= 1
        if error is not None:
            self.failures += 1
            self.last_error = error.str()

    def _on_reply(self, error: KafkaError | None, message: Message) -> None:
        # A reply nobody can receive (its gateway left) is counted and dropped: the durable
        # record of the prediction is the log, so it does not fail the batch.
        self.outstanding -= 1
        if error is not None:
            metrics.REPLY_ERRORS.inc()
            log.debug("reply not delivered", extra={"topic": message.topic(), "error": error.str()})


class InFlight:
    """Tickets in consumption order; :meth:`settle` stores or rewinds the finished head."""

    def __init__(
        self,
        store: Callable[[Sequence[Message]], None],
        rewind: Callable[[Sequence[Message]], None],
    ) -> None:
        self._store = store
        self._rewind = rewind
        self._tickets: deque[BatchTicket] = deque()

    def __len__(self) -> int:
        return len(self._tickets)

    def add(self, ticket: BatchTicket) -> None:
        self._tickets.append(ticket)

    def settle(self, rewind: bool = True) -> tuple[int, bool]:
        """Store the offsets of finished batches from the head.

        Returns (messages settled, False if the head batch's durable write failed). With
        ``rewind`` the consumer is then rewound to the oldest unsettled batch and the tickets
        dropped. Without it (inside a revoke, or on shutdown) the failed head stays queued and
        nothing after it is stored: the loop may still hold messages that a seek from here
        would not cover, so it rewinds on its next settle (or the next owner re-reads)."""
        settled = 0
        while self._tickets and self._tickets[0].done:
            head = self._tickets[0]
            if not head.ok:
                if rewind:
                    self._fail()
                return settled, False
            self._tickets.popleft()
            self._store(head.messages)
            settled += len(head.messages)
        return settled, True

    def _fail(self) -> None:
        head = self._tickets[0]
        unsettled = [message for ticket in self._tickets for message in ticket.messages]
        log.error(
            "durable write failed; consuming the unsettled batches again",
            extra={"failed": head.failures, "error": head.last_error, "messages": len(unsettled)},
        )
        self._tickets.clear()
        self._rewind(unsettled)
