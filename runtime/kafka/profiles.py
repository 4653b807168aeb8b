"""The named client profiles: every Kafka client rtml builds is one of these, nothing else.

A profile is pure data: the librdkafka properties that define its role (each with the reason
for its value), the properties taken from :class:`~runtime.settings.KafkaSettings`, the
properties its caller must or may set (client and group ids, one documented choice or two),
and how long its producer waits for room in a full local queue. Callers cannot override any
other property, so the delivery guarantees in :mod:`runtime.kafka` can be checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from runtime.settings import KafkaSettings

Kind = Literal["consumer", "producer", "admin"]

LIBRDKAFKA_DEFAULT_MESSAGE_TIMEOUT_MS = 300_000
"""librdkafka's message.timeout.ms when a producer profile does not set it."""
STATS_INTERVAL_MS = 5000
"""How often a request consumer's statistics (its lag per partition) are refreshed: well under a
Prometheus scrape interval, and a JSON parse of a few KB per consumer each time."""


def _frozen(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class Profile:
    name: str
    """Names the role; also the default client.id (``rtml.<name>``)."""
    kind: Kind
    config: Mapping[str, Any] = field(default_factory=dict)
    """librdkafka properties fixed for this role."""
    from_settings: Mapping[str, str] = field(default_factory=dict)
    """librdkafka property -> the KafkaSettings field it is read from."""
    required: frozenset[str] = frozenset()
    """Properties the caller must set (a consumer's group.id, ...)."""
    optional: frozenset[str] = frozenset()
    """Properties the caller may set besides client.id."""
    broker_health: bool = False
    """Track broker reachability (error_cb + stats_cb -> BrokerHealth) for fail-fast answers."""
    queue_full_wait_s: float | None = None
    """Producers: how long ``produce`` waits for room in a full local queue before raising
    QueueFull; None: up to the profile's message.timeout.ms (by then every queued message has
    been acknowledged or failed, so room always comes unless the producer is broken)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", _frozen(self.config))
        object.__setattr__(self, "from_settings", _frozen(self.from_settings))

    def properties(self, kafka: KafkaSettings, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """This role's librdkafka properties (without connection settings and callbacks)."""
        overrides = dict(overrides or {})
        allowed = self.required | self.optional | {"client.id"}
        refused = sorted(set(overrides) - allowed)
        if refused:
            raise ValueError(
                f"profile {self.name} fixes {', '.join(refused)}; a caller may set only "
                f"{', '.join(sorted(allowed))}"
            )
        missing = sorted(self.required - set(overrides))
        if missing:
            raise ValueError(f"profile {self.name} needs {', '.join(missing)} from its caller")
        properties: dict[str, Any] = {"client.id": f"rtml.{self.name}"}
        properties.update(self.config)
        properties.update({key: getattr(kafka, name) for key, name in self.from_settings.items()})
        properties.update(overrides)
        return properties

    def message_timeout_ms(self, kafka: KafkaSettings, overrides: Mapping[str, Any] | None = None) -> int:
        """How long a message may wait for its acknowledgement before it is reported failed."""
        value = self.properties(kafka, overrides).get(
            "message.timeout.ms", LIBRDKAFKA_DEFAULT_MESSAGE_TIMEOUT_MS
        )
        return int(value)


# ---- workers -------------------------------------------------------------------------------

REQUEST_CONSUMER = Profile(
    "request-consumer",
    "consumer",
    {
        # At-least-once: the loop stores a batch's offsets only once its log records, dead
        # letters and replies are acknowledged (workers/inflight.py) ...
        "enable.auto.offset.store": False,
        # ... and the auto-committer commits only what was stored (close and revoke commit too).
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        # A new group serves requests that were waiting before its first worker started.
        "auto.offset.reset": "earliest",
        # Prefetch is for batching, not hoarding: librdkafka's 64 MB default per consumer only
        # inflates RSS; 8 MB holds thousands of requests.
        "queued.max.messages.kbytes": 8192,
        # Adding or removing a worker moves only the partitions that must move.
        "partition.assignment.strategy": "cooperative-sticky",
        # A dead worker's partitions move within 10 s (its requests have deadlines).
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        # Lag per partition for Prometheus (workers/lag.py): librdkafka already knows each
        # partition's high watermark and position; one JSON document per interval, handed to
        # stats_cb inside the loop's own consume call, costs nothing per message.
        "statistics.interval.ms": STATS_INTERVAL_MS,
    },
    # The broker answers a held fetch as soon as data arrives: this bounds idle fetch traffic,
    # not latency (CONVENTIONS.md, traps).
    from_settings={"fetch.wait.max.ms": "fetch_wait_max_ms"},
    required=frozenset({"group.id"}),
)

EXACTLY_ONCE_CONSUMER = Profile(
    "exactly-once-consumer",
    "consumer",
    {
        # worker.exactly_once: offsets are committed inside the producer's transaction
        # (send_offsets_to_transaction), never by the consumer itself.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "queued.max.messages.kbytes": 8192,
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        # Requests a transactional producer aborted are not requests.
        "isolation.level": "read_committed",
        "statistics.interval.ms": STATS_INTERVAL_MS,
    },
    from_settings={"fetch.wait.max.ms": "fetch_wait_max_ms"},
    required=frozenset({"group.id"}),
)

TRANSACTIONAL_PRODUCER = Profile(
    "transactional-producer",
    "producer",
    {
        # One transaction per consumed batch: its log records, dead letters and the batch's
        # offsets become visible to read_committed readers together, or not at all.
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 1,
        "compression.type": "lz4",
        # A worker killed mid-transaction holds back read_committed readers until the broker
        # aborts it: keep that short (the next owner of its partitions re-serves the batch).
        "transaction.timeout.ms": 10000,
        # librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        "message.timeout.ms": 10000,
    },
    required=frozenset({"transactional.id"}),
)

DURABLE_PRODUCER = Profile(
    "durable-producer",
    "producer",
    {
        # The prediction log and dead letters are the durable outcome of a request: every
        # in-sync replica has it, and retries never duplicate or reorder within a partition.
        "acks": "all",
        "enable.idempotence": True,
        # Per-row log records: a 1 ms linger packs a batch's records into few requests.
        "linger.ms": 1,
        "compression.type": "lz4",
    },
    # A write not acknowledged by then fails its batch, which is re-read (never skipped).
    from_settings={"message.timeout.ms": "delivery_timeout_ms"},
)

REPLY_PRODUCER = Profile(
    "reply-producer",
    "producer",
    {
        # Latency first: a reply is worth something only while its gateway waits, and the
        # durable record of every prediction is the log; the leader's ack is enough.
        "acks": 1,
        "linger.ms": 0,
        # A reply that old has outlived any useful deadline; fail it and count it.
        "message.timeout.ms": 10000,
        # A reply topic deleted by a departed gateway must not stall the worker for long.
        "topic.metadata.propagation.max.ms": 2000,
    },
    # Never wait: the worker loop polls this producer every batch anyway.
    queue_full_wait_s=0.0,
)

# ---- gateway -------------------------------------------------------------------------------

REQUEST_PRODUCER = Profile(
    "request-producer",
    "producer",
    {
        # A request acknowledged once is in the topic exactly once: the 503/504 distinction
        # ("never acknowledged" vs "no worker answered") relies on the acknowledgement.
        "acks": "all",
        "enable.idempotence": True,
        # Each HTTP request is sent at once; batching comes from concurrent requests.
        "linger.ms": 0,
    },
    # message.timeout.ms: the gateway's max_timeout_ms; later than that nobody waits for it.
    required=frozenset({"message.timeout.ms"}),
    # All brokers down -> 503 at once instead of waiting out deadlines; stats flip it back.
    broker_health=True,
    # produce() runs on the event loop: a full queue is answered with 503, never waited for.
    queue_full_wait_s=0.0,
)

REPLY_CONSUMER = Profile(
    "reply-consumer",
    "consumer",
    {
        # Manual assignment at the end offsets looked up before /ready: no group membership,
        # no rebalance, nothing to commit (a reply is read once, by its own gateway).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    },
    from_settings={"fetch.wait.max.ms": "fetch_wait_max_ms"},
    # librdkafka requires a group.id even for manual assignment; it never joins.
    required=frozenset({"group.id"}),
)

# ---- drift ---------------------------------------------------------------------------------

LOG_READER = Profile(
    "log-reader",
    "consumer",
    {
        # At-least-once: offsets are committed explicitly, only after the batch's partial
        # aggregates are acknowledged (drift/app.py IngestService).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # A new detector reads the whole retained log (baselines need history).
        "auto.offset.reset": "earliest",
        # The event-time watermark ignores partitions read to their end.
        "enable.partition.eof": True,
        # Throughput first: large fetches feed consume(10000) batches.
        "fetch.max.bytes": 64 * 1024 * 1024,
    },
    required=frozenset({"group.id"}),
)

ALERT_CONSUMER = Profile(
    "alert-consumer",
    "consumer",
    {
        # At-least-once: an alert's offset is committed only after it was delivered or its
        # dead letter acknowledged (drift/alerts/forward.py).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    },
    required=frozenset({"group.id"}),
)

ALERT_TAIL = Profile(
    "alert-tail",
    "consumer",
    {
        # A private group per run, read-only: it never commits.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    },
    required=frozenset({"group.id", "auto.offset.reset"}),
)

ALERT_PRODUCER = Profile(
    "alert-producer",
    "producer",
    {
        # An alert dead letter replaces a delivery: it must be durable before the commit.
        "acks": "all",
        "enable.idempotence": True,
    },
    from_settings={"message.timeout.ms": "delivery_timeout_ms"},
)

# ---- control plane -------------------------------------------------------------------------

CONTROL_READER = Profile(
    "control-reader",
    "consumer",
    {
        # Every process reads the whole compacted control topic by manual assignment from the
        # beginning: no group, no rebalance, nothing committed (runtime/control.py).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        # Changes are rare: the broker answers a held fetch as soon as a record arrives, so a change
        # still arrives within one round trip, while an idle process costs the broker one fetch
        # every 5 s (at 500 ms, the control readers doubled the idle stack's broker CPU).
        "fetch.wait.max.ms": 5000,
        "queued.max.messages.kbytes": 1024,
    },
    # librdkafka requires a group.id even for manual assignment; it never joins.
    required=frozenset({"group.id"}),
)

CONTROL_WRITER = Profile(
    "control-writer",
    "producer",
    {
        # A lifecycle change is acknowledged to the operator only once every replica has it.
        "acks": "all",
        "enable.idempotence": True,
    },
    from_settings={"message.timeout.ms": "delivery_timeout_ms"},
)

ARTIFACT_READER = Profile(
    "artifact-reader",
    "consumer",
    {
        # Read once from the start to the end (runtime/artifacts.py), by manual assignment.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        # Artifacts are large: big fetches, and a bounded prefetch.
        "fetch.max.bytes": 64 * 1024 * 1024,
        "queued.max.messages.kbytes": 65536,
    },
    required=frozenset({"group.id"}),
)

ARTIFACT_WRITER = Profile(
    "artifact-writer",
    "producer",
    {
        # A chunk the manifest points to must be on every replica before the manifest is written.
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 5,
    },
    from_settings={"message.timeout.ms": "delivery_timeout_ms"},
)

# ---- tools ---------------------------------------------------------------------------------

LAG_PROBE = Profile(
    "lag-probe",
    "consumer",
    {
        # Reads a group's committed offsets without joining it or committing anything.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    },
    required=frozenset({"group.id"}),
)

REPLY_HEARTBEAT = Profile(
    "reply-heartbeat",
    "consumer",
    {
        # Never joins its group: commits the one heartbeat offset it is given, reads committed ones.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Bounds how long a commit waits for a coordinator (librdkafka waits session.timeout.ms,
        # 45 s by default), and so a close with a commit pending; the group is never joined.
        "session.timeout.ms": 5000,
        "heartbeat.interval.ms": 1000,
    },
    required=frozenset({"group.id"}),
)
"""A reply topic's heartbeat (gateway/reply_janitor.py), written and read through the group
coordinator as any consumer's commit is, not through the admin API: librdkafka's admin group
requests can abort the process when they time out while the broker is down (librdkafka #4605)."""

ADMIN = Profile("admin", "admin")
"""Topic creation and deletion: connection settings only."""

PROFILES: tuple[Profile, ...] = (
    REQUEST_CONSUMER,
    EXACTLY_ONCE_CONSUMER,
    TRANSACTIONAL_PRODUCER,
    DURABLE_PRODUCER,
    REPLY_PRODUCER,
    REQUEST_PRODUCER,
    REPLY_CONSUMER,
    LOG_READER,
    ALERT_CONSUMER,
    ALERT_TAIL,
    ALERT_PRODUCER,
    CONTROL_READER,
    CONTROL_WRITER,
    ARTIFACT_READER,
    ARTIFACT_WRITER,
    LAG_PROBE,
    REPLY_HEARTBEAT,
    ADMIN,
)
