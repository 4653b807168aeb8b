"""The heartbeat of this gateway's reply topic, and the janitor that deletes the reply topics of
gateways that are gone (what counts as gone: gateway/reply_orphans.py).

Two daemon threads per gateway, neither on the request path. One commits this gateway's heartbeat
every ``heartbeat_s`` (one OffsetCommit for the group named like the reply topic; the gateway
never joins it). The other, every ``gateway.reply_topic_gc_interval_s``, lists the topics under
the reply prefix (one metadata request), reads each one's heartbeat (one OffsetFetch per topic)
and deletes the orphans, topic and heartbeat group, after reading their heartbeat once more.
``rtml gateway gc-reply-topics`` runs the same sweep for a while and stops (operators, CronJobs).

Only Kafka is involved: the broker that carries the replies also keeps the heartbeats, and the
prefix (``kafka.reply_topic_prefix``) bounds what a janitor may touch, so stacks with different
prefixes on one cluster never delete each other's topics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from gateway import metrics
from gateway.reply_orphans import OrphanPolicy, Verdict, Watch, candidates, encode_heartbeat
from runtime.clock import now_ms
from runtime.kafka import REPLY_HEARTBEAT, new_admin, new_consumer
from runtime.settings import GatewaySettings, KafkaSettings

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
"""Each admin request; a pass that times out is a failed pass (its watch starts again)."""
GAP_SLACK_S = 30.0
"""Passes may be late by this much (slow requests) before the watch counts as broken."""
STOP_WAIT_S = 2.0
"""How long a stopping gateway waits for each of the two threads."""
FAILURES = (KafkaException, TimeoutError)


def heartbeat_group(topic: str) -> str:
    """The consumer group whose committed offset is ``topic``'s heartbeat: named like the topic."""
    return topic


class ReplyOwners:
    """Heartbeats on the broker: write ours, read the others', delete the orphans.

    Heartbeats go through the group coordinator as ordinary consumer commits and offset reads
    (a REPLY_HEARTBEAT consumer per heartbeat group, never joining it), not through the admin
    API's group requests: those abort the whole process in librdkafka 2.x when they time out
    while the broker is down (librdkafka #4605: both gateways of the fault suite died that way).
    The admin client only lists and deletes topics and, once an orphan's topic is gone, its group."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.prefix = kafka.reply_topic_prefix
        self._kafka = kafka
        self._admin = new_admin(kafka)
        self._writers: dict[str, Consumer] = {}
        """Heartbeat group -> the consumer that commits its heartbeat (a gateway has one)."""

    def beat(self, topic: str, instance_id: str, at_ms: int | None = None) -> None:
        """Commit ``topic``'s heartbeat, stamped now (or ``at_ms``); raises if the broker did not
        take it."""
        stamp = encode_heartbeat(instance_id, now_ms() if at_ms is None else at_ms)
        group = heartbeat_group(topic)
        writer = self._writers.get(group)
        if writer is None:
            writer = self._writers[group] = new_consumer(self._kafka, REPLY_HEARTBEAT, {"group.id": group})
        # Raises KafkaException when not taken; without a coordinator within the profile's
        # session.timeout.ms (5 s).
        committed = writer.commit(offsets=[TopicPartition(topic, 0, 0, metadata=stamp)], asynchronous=False)
        for partition in committed or []:
            if partition.error is not None:
                raise KafkaException(partition.error)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def reply_topics(self, own: Iterable[str] = ()) -> list[str]:
        topics = self._admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics
        return candidates(topics, self.prefix, own)

    def heartbeats(self, topics: Iterable[str]) -> dict[str, str | None]:
        """Each topic's heartbeat (None: it has none); a topic whose heartbeat could not be read is
        left out (not seen this pass)."""
        read: dict[str, str | None] = {}
        for topic in topics:
            reader = new_consumer(self._kafka, REPLY_HEARTBEAT, {"group.id": heartbeat_group(topic)})
            try:
                partitions = reader.committed([TopicPartition(topic, 0)], timeout=REQUEST_TIMEOUT_S)
            except FAILURES as exc:
                log.debug("reply topic heartbeat unreadable", extra={"topic": topic, "error": str(exc)})
                continue
            finally:
                reader.close()
            if len(partitions) == 1 and partitions[0].error is None:
                read[topic] = partitions[0].metadata if partitions[0].offset >= 0 else None
        return read

    def delete(self, topics: list[str]) -> list[str]:
        """Delete ``topics`` and their heartbeat groups; returns the topics this call deleted."""
        if not topics:
            return []
        deleted = []
        for topic, future in self._admin.delete_topics(topics, operation_timeout=REQUEST_TIMEOUT_S).items():
            try:
                future.result(timeout=3 * REQUEST_TIMEOUT_S)
                deleted.append(topic)
            except FAILURES as exc:
                if not _is(exc, KafkaError.UNKNOWN_TOPIC_OR_PART):  # else another janitor was first
                    log.warning("could not delete reply topic", extra={"topic": topic, "error": str(exc)})
        self.delete_groups([heartbeat_group(topic) for topic in topics])
        return deleted

    def delete_groups(self, groups: list[str]) -> None:
        """Best effort: an empty group without offsets is removed by the broker eventually anyway."""
        if not groups:
            return
        futures = self._admin.delete_consumer_groups(groups, request_timeout=REQUEST_TIMEOUT_S)
        for group, future in futures.items():
            try:
                future.result(timeout=2 * REQUEST_TIMEOUT_S)
            except FAILURES as exc:
                log.debug("heartbeat group not deleted", extra={"group": group, "error": str(exc)})


def _is(exc: BaseException, code: int) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == code


class ReplyTopicJanitor:
    """This gateway's heartbeat (when it owns ``topic``) and the sweep of everyone else's topics."""

    def __init__(
        self,
        kafka: KafkaSettings,
        gateway: GatewaySettings,
        topic: str | None,
        instance_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = OrphanPolicy(gateway.reply_topic_orphan_after_s)
        self.interval_s = gateway.reply_topic_gc_interval_s
        self.topic = topic
        self._instance_id = instance_id
        self._clock = clock
        self.owners = ReplyOwners(kafka)
        period = max(self.interval_s, self.policy.heartbeat_s)
        self.watch = Watch(self.policy, max_gap_s=2 * period + GAP_SLACK_S)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._beat_failing = False

    def start(self) -> None:
        """Heartbeat now and from now on; sweep every ``interval_s`` (0: never)."""
        self.beat()
        if self.topic is not None:
            self._threads.append(
                threading.Thread(target=self._beat_loop, name="reply-heartbeat", daemon=True)
            )
        if self.interval_s > 0:
            self._threads.append(threading.Thread(target=self._sweep_loop, name="reply-janitor", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads; a pass still waiting on the broker is left to finish on its own (a
        beat landing after the topic is deleted fails: it cannot bring the group back)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=STOP_WAIT_S)
        if not any(thread.is_alive() for thread in self._threads):
            self.owners.close()  # else a beat still uses its consumer: left to the process exit

    def beat(self) -> bool:
        """One heartbeat of our topic; a failure is counted and logged once per failing streak."""
        if self.topic is None:
            return False
        try:
            self.owners.beat(self.topic, self._instance_id)
        except FAILURES as exc:
            metrics.REPLY_HEARTBEAT_ERRORS.inc()
            if not self._beat_failing:  # e.g. a just-created topic the broker does not know yet
                log.warning("reply topic heartbeat failed", extra={"topic": self.topic, "error": str(exc)})
            self._beat_failing = True
            return False
        if self._beat_failing:
            log.info("reply topic heartbeat restored", extra={"topic": self.topic})
        self._beat_failing = False
        return True

    def observe(self) -> None:
        """One look at every reply topic but ours (raises if the broker cannot be asked)."""
        topics = self.owners.reply_topics([self.topic] if self.topic else [])
        heartbeats = self.owners.heartbeats(topics)
        self.watch.update(heartbeats, self._clock())

    def collect(self, dry_run: bool = False) -> tuple[list[Verdict], list[str]]:
        """Judge what has been watched; delete the orphans (unless ``dry_run``) whose heartbeat,
        read once more, is still the one judged. Returns every verdict and the topics deleted."""
        verdicts = self.watch.verdicts(self._clock(), now_ms())
        orphans = [verdict.topic for verdict in verdicts if verdict.orphan]
        if dry_run or not orphans:
            return verdicts, []
        again = self.owners.heartbeats(orphans)
        confirmed = [t for t in orphans if t in again and self.watch.unchanged(t, again[t])]
        deleted = self.owners.delete(confirmed)
        for verdict in verdicts:
            if verdict.topic in deleted:
                metrics.REPLY_TOPICS_DELETED.inc()
                extra = {"topic": verdict.topic, "reason": verdict.reason}
                log.warning("deleted orphaned reply topic", extra=extra)
        spared = set(orphans) - set(confirmed)
        changed = "heartbeat changed (or unreadable) when read again"
        return [
            replace(v, orphan=False, reason=changed) if v.topic in spared else v for v in verdicts
        ], deleted

    def sweep(self) -> list[str]:
        """One janitor pass; a failed pass forgets what was watched (the watch starts again)."""
        try:
            self.observe()
            return self.collect()[1]
        except FAILURES as exc:
            self.watch.forget()
            log.warning("reply topic sweep failed", extra={"error": str(exc)})
            return []

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.policy.heartbeat_s):
            self.beat()

    def _sweep_loop(self) -> None:
        while not self._stop.is_set():
            self.sweep()
            self._stop.wait(self.interval_s)


def sweep_reply_topics(
    kafka: KafkaSettings, gateway: GatewaySettings, watch_s: float, dry_run: bool
) -> tuple[list[Verdict], list[str]]:
    """``rtml gateway gc-reply-topics``: watch every reply topic for ``watch_s`` (a look every
    heartbeat period), then judge and delete, as a gateway's janitor would."""
    janitor = ReplyTopicJanitor(kafka, gateway, None, "gc-reply-topics")
    janitor.observe()
    deadline = time.monotonic() + watch_s  # from the first look: each topic watched watch_s at least
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, janitor.policy.heartbeat_s))
        janitor.observe()
    return janitor.collect(dry_run)
