"""Read the prediction log in batches and turn each batch into partial aggregates.

Faust hands records to agents one event at a time (a few thousand events/s
here), far below the log's serving rate, so the firehose is read with a
confluent-kafka consumer instead: ``consume(max_batch_records)``, decoded and
binned with numpy (:mod:`drift.aggregate`), leaving one :class:`~drift.detector.Partial`
per (model, version, step) per batch for the Faust agent. Offsets are committed
only after the batch's partials are acknowledged by Kafka (at-least-once).

The event-time watermark is the *lowest* latest-event-time over the assigned
partitions that still have unread records (partitions at their end do not hold
it back), so a replay that reads one partition ahead of another does not close
windows early. Only the last partial of a model version in a batch carries it,
so every step of the batch is merged before its windows are evaluated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from drift import metrics
from drift.aggregate import Collector, StepKey
from drift.config import Catalog
from drift.detector import Partial
from drift.totals import Totals
from runtime.errors import BadRecord
from runtime.kafka import LOG_READER, new_consumer
from runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Watermarks:
    """Latest event time per partition, and which partitions are read to their end."""

    assigned: set[int] = field(default_factory=set)
    latest: dict[int, int] = field(default_factory=dict)
    at_end: set[int] = field(default_factory=set)

    def assign(self, partitions: list[int]) -> None:
        self.assigned.update(partitions)

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self.assigned.discard(p)
            self.latest.pop(p, None)
            self.at_end.discard(p)

    def seen(self, partition: int, event_ms: int) -> None:
        self.at_end.discard(partition)
        if event_ms > self.latest.get(partition, -1):
            self.latest[partition] = event_ms

    def reached_end(self, partition: int) -> None:
        self.at_end.add(partition)

    def low(self) -> int | None:
        """The event time every assigned partition has reached (None: not known yet)."""
        behind = [p for p in self.assigned if p not in self.at_end]
        if any(p not in self.latest for p in behind):
            return None
        if behind:
            return min(self.latest[p] for p in behind)
        known = [self.latest[p] for p in self.assigned if p in self.latest]
        return max(known) if known else None


@dataclass
class Batch:
    partials: list[Partial]
    offsets: list[TopicPartition]
    """Next offsets to commit once the partials are durable."""
    records: int
    watermark_ms: int | None


def to_partials(steps: dict[StepKey, Totals], watermark_ms: int | None) -> list[Partial]:
    """Partials in step order per model version; the last of each carries the watermark."""
    ordered = sorted(steps.items())
    partials = []
    for i, ((model, version, step), totals) in enumerate(ordered):
        is_last = i + 1 == len(ordered) or ordered[i + 1][0][:2] != (model, version)
        partials.append(Partial(model, version, step, watermark_ms if is_last else None, totals))
    return partials


class LogReader:
    """A consumer-group member over the prediction log; call from one thread only."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.catalog = catalog
        """Replaced by the app when the registry changes."""
        self.topic = settings.kafka.predictions_topic
        self.max_records = settings.drift.max_batch_records
        self.timeout_s = settings.drift.poll_timeout_ms / 1000
        self.watermarks = Watermarks()
        self._sent: dict[tuple[str, str], int] = {}
        """Latest watermark sent per model version."""
        # LOG_READER never commits by itself: commit() does, once the batch's partials are acked.
        self._consumer = new_consumer(settings.kafka, LOG_READER, {"group.id": settings.drift.reader_group})
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.watermarks.assign([tp.partition for tp in partitions])
        log.info("log partitions assigned", extra={"partitions": [tp.partition for tp in partitions]})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.watermarks.revoke([tp.partition for tp in partitions])

    def poll(self) -> Batch:
        """Read up to ``max_batch_records`` and aggregate them (blocks up to the poll timeout)."""
        messages = self._consumer.consume(self.max_records, self.timeout_s)
        started = time.perf_counter()
        collector = Collector(self.catalog)
        offsets: dict[int, int] = {}
        latest: dict[int, int] = {}
        for message in messages:
            self._read(message, collector, offsets, latest)
        for partition, event_ms in latest.items():
            self.watermarks.seen(partition, event_ms)
        steps = collector.finish()
        watermark = self.watermarks.low()
        for result, count in collector.outcomes.items():
            metrics.RECORDS.labels(result).inc(count)
        if messages:
            metrics.BATCHES.inc()
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        if watermark is not None:
            metrics.WATERMARK.set(watermark / 1000)
        commit = [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
        partials = to_partials(steps, watermark) + self._ticks(steps, watermark)
        return Batch(partials, commit, sum(collector.outcomes.values()), watermark)

    def _ticks(self, steps: dict[StepKey, Totals], watermark: int | None) -> list[Partial]:
        """Empty partials carrying a watermark that moved without new records of a model version
        (its partition reached the end later than its last records), so its windows still close."""
        if watermark is None:
            return []
        fresh = {(model, version) for model, version, _ in steps}
        ticks = []
        for key, sent in list(self._sent.items()):
            plan = self.catalog.lookup(*key)
            if key not in fresh and watermark > sent and not isinstance(plan, str):
                ticks.append(Partial(*key, plan.step_of(watermark), watermark, Totals.empty(plan.layout)))
        self._sent.update(dict.fromkeys([*fresh, *(p.key_pair for p in ticks)], watermark))
        return ticks

    def _read(
        self, message: Message, collector: Collector, offsets: dict[int, int], latest: dict[int, int]
    ) -> None:
        error = message.error()
        partition = message.partition()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                if partition in latest:  # records before the end come first
                    self.watermarks.seen(partition, latest.pop(partition))
                self.watermarks.reached_end(partition)
            else:
                log.warning("prediction log read error: %s", error.str(), extra={"topic": self.topic})
            return
        assert partition is not None
        offsets[partition] = int(message.offset() or 0) + 1
        try:
            event_ms = collector.add(message.value())
        except BadRecord as exc:
            collector.outcomes["bad_payload"] += 1
            log.debug("skipping prediction-log record: %s", exc, extra={"partition": partition})
            return
        if event_ms > latest.get(partition, -1):
            latest[partition] = event_ms

    def commit(self, offsets: list[TopicPartition]) -> None:
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=False)

    def close(self) -> None:
        self._consumer.close()
