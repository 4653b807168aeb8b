"""The Kafka layer as data: profiles, the topic table, the full-queue policy (no broker, no client)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from runtime import kafka as rk
from runtime.kafka.clients import KafkaProducer
from runtime.kafka.topics import PARTIALS_RETENTION_MS, REPLY_RETENTION_MS
from runtime.settings import DriftSettings, KafkaSettings, Settings
from tests.paths import REPO_ROOT

KAFKA = KafkaSettings(
    fetch_wait_max_ms=250, delivery_timeout_ms=12_000, security={"security.protocol": "SSL"}
)
IDS = {"group.id": "g", "auto.offset.reset": "latest", "message.timeout.ms": 7000, "transactional.id": "t"}


def props(profile: rk.Profile, kafka: KafkaSettings = KAFKA) -> dict[str, Any]:
    """The profile's properties with whatever its caller must set."""
    return profile.properties(kafka, {k: v for k, v in IDS.items() if k in profile.required})


CONSUMERS = [p for p in rk.PROFILES if p.kind == "consumer"]
PRODUCERS = [p for p in rk.PROFILES if p.kind == "producer"]


# ---- delivery guarantees, as ARCHITECTURE.md states them -----------------------------------


def test_exactly_once_commits_offsets_only_inside_transactions() -> None:
    consumer, producer = props(rk.EXACTLY_ONCE_CONSUMER), props(rk.TRANSACTIONAL_PRODUCER)
    assert consumer["enable.auto.commit"] is False and consumer["isolation.level"] == "read_committed"
    assert producer["transactional.id"] == "t" and producer["acks"] == "all"
    assert producer["transaction.timeout.ms"] <= 10_000  # a killed worker holds readers back this long


def test_request_consumer_commits_only_what_the_loop_stored() -> None:
    config = props(rk.REQUEST_CONSUMER)
    assert config["enable.auto.offset.store"] is False
    assert config["enable.auto.commit"] is True
    assert config["fetch.wait.max.ms"] == 250


@pytest.mark.parametrize("profile", CONSUMERS, ids=lambda p: p.name)
def test_no_consumer_stores_offsets_by_itself(profile: rk.Profile) -> None:
    config = props(profile)
    assert config["enable.auto.offset.store"] is False
    if profile is not rk.REQUEST_CONSUMER:
        assert config["enable.auto.commit"] is False, "commits are explicit, after the outcome"
    assert "group.id" in profile.required


@pytest.mark.parametrize("profile", [rk.DURABLE_PRODUCER, rk.ALERT_PRODUCER, rk.REQUEST_PRODUCER])
def test_durable_producers_wait_for_every_replica_without_duplicates(profile: rk.Profile) -> None:
    config = props(profile)
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True


def test_durable_writes_time_out_after_the_configured_delivery_timeout() -> None:
    assert props(rk.DURABLE_PRODUCER)["message.timeout.ms"] == 12_000
    assert rk.DURABLE_PRODUCER.message_timeout_ms(KAFKA) == 12_000
    assert rk.ALERT_PRODUCER.message_timeout_ms(KAFKA) == 12_000
    assert rk.REQUEST_PRODUCER.message_timeout_ms(KAFKA, {"message.timeout.ms": 60_000}) == 60_000


def test_replies_are_latency_first() -> None:
    config = props(rk.REPLY_PRODUCER)
    assert (config["acks"], config["linger.ms"]) == (1, 0)
    assert "enable.idempotence" not in config
    assert rk.REPLY_PRODUCER.queue_full_wait_s == 0


def test_drain_covers_the_longest_delivery_timeout() -> None:
    durable = rk.DURABLE_PRODUCER.message_timeout_ms(KAFKA) / 1000
    reply = rk.REPLY_PRODUCER.message_timeout_ms(KAFKA) / 1000
    assert rk.drain_timeout_s(durable, reply) == 12.0 + rk.DELIVERY_REPORT_MARGIN_S
    default = rk.DURABLE_PRODUCER.message_timeout_ms(KafkaSettings()) / 1000
    assert rk.drain_timeout_s(default, reply) == 35.0  # what the worker waited before it was derived


def test_only_the_gateway_tracks_broker_health_and_never_waits_for_room() -> None:
    assert [p for p in rk.PROFILES if p.broker_health] == [rk.REQUEST_PRODUCER]
    assert rk.REQUEST_PRODUCER.queue_full_wait_s == 0


# ---- what callers may and may not set --------------------------------------------------------


def test_a_caller_cannot_override_a_fixed_property() -> None:
    with pytest.raises(ValueError, match=r"request-consumer fixes enable.auto.offset.store"):
        rk.REQUEST_CONSUMER.properties(KAFKA, {"group.id": "g", "enable.auto.offset.store": True})


def test_a_caller_must_set_what_the_profile_needs() -> None:
    with pytest.raises(ValueError, match=r"request-producer needs message.timeout.ms"):
        rk.REQUEST_PRODUCER.properties(KAFKA)
    with pytest.raises(ValueError, match=r"alert-tail needs auto.offset.reset, group.id"):
        rk.ALERT_TAIL.properties(KAFKA)


@pytest.mark.parametrize("profile", rk.PROFILES, ids=lambda p: p.name)
def test_every_profile_names_its_client_and_reads_real_settings(profile: rk.Profile) -> None:
    config = props(profile)
    assert config["client.id"] == f"rtml.{profile.name}"
    assert (
        profile.properties(KAFKA, {**{k: IDS[k] for k in profile.required}, "client.id": "x"})["client.id"]
        == "x"
    )
    for field in profile.from_settings.values():
        assert field in KafkaSettings.model_fields
    assert not set(profile.config) & set(profile.from_settings), "one source per property"


def test_connection_settings_apply_to_every_client() -> None:
    config = rk.client_config(KAFKA, **props(rk.LOG_READER))
    assert config["bootstrap.servers"] == KAFKA.bootstrap_servers
    assert config["security.protocol"] == "SSL"
    assert config["socket.nagle.disable"] is True


def test_profiles_have_unique_names() -> None:
    names = [p.name for p in rk.PROFILES]
    assert len(names) == len(set(names))


# ---- the topic table -------------------------------------------------------------------------


def settings() -> Settings:
    kafka = KafkaSettings(request_partitions=6, log_partitions=3)
    return Settings(kafka=kafka, drift=DriftSettings(partitions=5, app_id="d"))


def test_the_table_lists_every_topic_once_with_its_partitions_and_retention() -> None:
    table = {spec.name: spec for spec in rk.topic_table(settings(), ["iris", "fraud"], ["gw1"])}
    assert len(table) == len(rk.topic_table(settings(), ["iris", "fraud"], ["gw1"]))
    assert table["rtml.requests.iris"].partitions == 6
    reply = table["rtml.replies.gw1"]
    assert (reply.partitions, reply.retention_ms, REPLY_RETENTION_MS) == (1, 60_000, 60_000)
    assert reply.config() == {"cleanup.policy": "delete", "retention.ms": "60000"}
    assert table["rtml.predictions"].partitions == table["rtml.dlq"].partitions == 3
    assert table["rtml.predictions"].config() == {"cleanup.policy": "delete"}
    assert table["rtml.drift.partials"].retention_ms == PARTIALS_RETENTION_MS == 86_400_000
    assert table["rtml.drift.alerts"].partitions == table["rtml.drift.alerts.dlq"].partitions == 1


def test_faust_changelogs_are_co_partitioned_with_the_partials() -> None:
    table = rk.topic_table(settings())
    changelogs = [spec for spec in table if spec.created_by == "faust"]
    assert [c.name for c in changelogs] == [
        f"d-{rk.STEPS_TABLE}-changelog",
        f"d-{rk.STATE_TABLE}-changelog",
    ]
    assert all(c.cleanup_policy == "compact" and c.partitions == 5 for c in changelogs)
    partials = next(spec for spec in table if spec.name == "rtml.drift.partials")
    assert partials.partitions == 5


def test_each_process_ensures_a_slice_of_the_table() -> None:
    s = settings()
    table = rk.topic_table(s, ["iris"], ["gw1"])
    for part in (
        rk.serving_topics(s.kafka, ["iris"]),
        rk.gateway_topics(s.kafka, "gw1", ["iris"]),
        rk.drift_topics(s),
    ):
        assert all(spec in table and spec.created_by == "rtml" for spec in part)
    assert [t.name for t in rk.serving_topics(s.kafka, ["iris"])] == [
        "rtml.requests.iris",
        "rtml.predictions",
        "rtml.dlq",
        "rtml.control",
        "rtml.model-events",
        "rtml.artifacts",
    ]
    control = next(t for t in table if t.name == "rtml.control")
    assert (control.partitions, control.cleanup_policy) == (1, "compact")
    assert rk.gateway_topics(s.kafka, "gw1", [])[0] == rk.reply_topic(s.kafka, "gw1")


def test_ensure_topics_refuses_what_faust_creates_before_connecting() -> None:
    with pytest.raises(ValueError, match="not created by rtml: d-drift-state-changelog"):
        rk.ensure_topics(
            KafkaSettings(), [spec for spec in rk.topic_table(settings()) if "state" in spec.name]
        )
    rk.ensure_topics(KafkaSettings(), [])  # nothing to do: no client at all


# ---- the full-queue policy -------------------------------------------------------------------


class FullQueue:
    """Stands in for confluent_kafka.Producer: full for ``full_for`` produce calls."""

    def __init__(self, full_for: int) -> None:
        self.full_for = full_for
        self.produced: list[tuple[str, bytes]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes, key: bytes | None = None, on_delivery: Any = None) -> None:
        if self.full_for > 0:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((topic, value))

    def poll(self, _timeout: float) -> int:
        self.polls += 1
        return 0

    def __len__(self) -> int:
        return 100_000


def producer_over(fake: FullQueue, wait_s: float) -> KafkaProducer:
    producer = KafkaProducer.__new__(KafkaProducer)  # the policy without a librdkafka client
    producer.name, producer.queue_full_wait_s = "rtml.test", wait_s
    producer._producer = fake  # type: ignore[assignment]
    producer._produce = fake.produce  # type: ignore[method-assign]
    return producer


def test_a_full_queue_is_drained_by_polling_until_the_message_fits() -> None:
    fake = FullQueue(full_for=3)
    producer_over(fake, wait_s=5.0).produce("t", b"v")
    assert fake.produced == [("t", b"v")]
    assert fake.polls == 3


def test_a_queue_still_full_after_the_wait_raises_queue_full_naming_client_and_topic() -> None:
    fake = FullQueue(full_for=10**9)
    with pytest.raises(rk.QueueFull, match=r"rtml.test: local queue still full after 0 s .*100000.* to t$"):
        producer_over(fake, wait_s=0.0).produce("t", b"v")
    assert fake.polls == 1  # one poll to serve what was acknowledged, then give up
    assert issubclass(rk.QueueFull, BufferError)


def test_a_caller_may_shorten_the_wait() -> None:
    fake = FullQueue(full_for=10**9)
    with pytest.raises(rk.QueueFull):
        producer_over(fake, wait_s=60.0).produce("t", b"v", max_wait_s=0.02)


# ---- nothing else builds a client ------------------------------------------------------------

CLIENTS = {"Consumer", "Producer", "AdminClient"}
PACKAGES = ["rtml", "runtime", "gateway", "workers", "drift", "importers", "schemas"]
ALLOWED = {
    Path("runtime/kafka/clients.py"),
    # The local broker's readiness probe: bootstrap only, and its errors are expected (debug).
    Path("rtml/infra/kafka.py"),
}


def _client_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka")
        for alias in node.names
        if alias.name in CLIENTS
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported
    ]


def test_every_client_is_built_by_the_kafka_layer() -> None:
    found = [
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for package in PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if path.relative_to(REPO_ROOT) not in ALLOWED
        for line in _client_calls(path)
    ]
    assert not found, f"build clients with runtime.kafka's factories: {found}"


class _Error:
    """The two methods ErrorLog reads of a confluent_kafka.KafkaError."""

    def __init__(self, text: str, fatal: bool = False) -> None:
        self._text, self._fatal = text, fatal

    def str(self) -> str:
        return self._text

    def fatal(self) -> bool:
        return self._fatal


def test_a_repeated_client_error_is_logged_once_per_interval_with_its_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.kafka import config

    now = [100.0]
    monkeypatch.setattr(config.time, "monotonic", lambda: now[0])
    errors = config.ErrorLog("worker-1", interval_s=10.0)
    refused = _Error("127.0.0.1:9092/1: Connect failed: Connection refused")
    with caplog.at_level("WARNING", logger="runtime.kafka"):
        for _ in range(50):  # a reconnect loop: every 100 ms for 5 s
            errors(refused)  # type: ignore[arg-type]
            now[0] += 0.1
        errors(_Error("1/1 brokers are down"))  # type: ignore[arg-type]  # another error: logged
        now[0] += 6.0
        errors(refused)  # type: ignore[arg-type]  # past the interval: logged with the repeats
        errors(_Error("fenced", fatal=True))  # type: ignore[arg-type]
        errors(_Error("fenced", fatal=True))  # type: ignore[arg-type]  # fatal: never throttled
    lines = [(r.levelname, r.__dict__["error"], r.__dict__.get("repeated")) for r in caplog.records]
    assert lines == [
        ("WARNING", refused.str(), None),
        ("WARNING", "1/1 brokers are down", None),
        ("WARNING", refused.str(), 49),
        ("ERROR", "fenced", None),
        ("ERROR", "fenced", None),
    ]
