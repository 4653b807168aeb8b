"""``worker.exactly_once``: one Kafka transaction per consumed batch.

The batch's log records and dead letters are produced inside a transaction, and the batch's
offsets are added to it (``send_offsets_to_transaction`` with the consumer's group metadata,
KIP-447: a worker that lost its partitions is fenced by the group's generation). Commit makes
all of it visible to ``read_committed`` readers at once; an abort (or a worker killed before the
commit) makes none of it visible, and the batch is consumed again from the committed offsets.
So a ``read_committed`` consumer of the log sees exactly one record per request row.

Replies are not in the transaction: they are latency, and a re-served batch's second reply is
dropped by the gateway (its correlation id is no longer waited for).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaException, Message

from runtime.kafka import TRANSACTIONAL_PRODUCER, KafkaProducer
from runtime.settings import KafkaSettings
from workers.consume import RequestConsumer
from workers.inflight import BatchTicket

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_S = 30.0


class TransactionalOutbox:
    """The DurableOutbox interface (``track``, ``send``, ``poll``, ``flush``, ``close``), plus
    :meth:`begin` and :meth:`commit` around each batch."""

    def __init__(self, kafka: KafkaSettings, client_id: str, transactional_id: str) -> None:
        self._producer = KafkaProducer(
            kafka, TRANSACTIONAL_PRODUCER, {"client.id": client_id, "transactional.id": transactional_id}
        )
        self._tx = self._producer.transactions
        # Fences an earlier incarnation with the same transactional.id and aborts what it left open.
        self._tx.init_transactions(TRANSACTION_TIMEOUT_S)
        self.delivery_timeout_s = self._producer.delivery_timeout_s
        self._failed: str | None = None

    def track(self, ticket: BatchTicket) -> None:
        """Acknowledgements are settled by the commit, not counted per message."""

    def begin(self) -> None:
        self._failed = None
        self._tx.begin_transaction()

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        try:
            self._producer.produce(topic, value, key)
        except (KafkaException, BufferError) as exc:
            self._failed = str(exc)

    def send_many(self, topic: str, values: Sequence[bytes], key: bytes | None = None) -> None:
        for value in values:
            self.send(topic, value, key)

    def commit(self, messages: Sequence[Message], consumer: RequestConsumer) -> bool:
        """Commit the batch's output and offsets together; False (after an abort) if that failed:
        the caller re-reads the batch."""
        try:
            if self._failed is not None:
                raise KafkaException(f"a record was not queued: {self._failed}")
            self._tx.send_offsets_to_transaction(
                consumer.transaction_offsets(messages), consumer.group_metadata(), TRANSACTION_TIMEOUT_S
            )
            self._tx.commit_transaction(TRANSACTION_TIMEOUT_S)
            return True
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            fatal = getattr(error, "fatal", lambda: False)()
            log.error("transaction failed; aborting, the batch is consumed again", extra={"error": str(exc)})
            if fatal:
                raise  # fenced or broken: the process exits and its supervisor starts a fresh one
            self._tx.abort_transaction(TRANSACTION_TIMEOUT_S)
            return False

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        return self._producer.flush(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
