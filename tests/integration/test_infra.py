"""rtml.infra against real processes: Redis and Kafka really start, serve and stop."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin does not re-export it for mypy

from rtml import infra
from rtml.infra import kafka, process, redis
from runtime.errors import NotOurProcess, PrerequisiteMissing, ServiceUnreachable
from runtime.settings import InfraSettings, Settings
from tests.infra_fixtures import LocalKafka, LocalRedis

EXTERNAL_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "RTML_KAFKA__BOOTSTRAP_SERVERS", "REDIS_URL", "RTML_REDIS__URL")


def _topic(bootstrap: str) -> str:
    name = f"rtml.test.infra.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the futures
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(timeout=15)
    return name


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value)
    assert producer.flush(15) == 0, "message not delivered within 15 s"


def _consume_one(bootstrap: str, topic: str, timeout_s: float = 30.0) -> bytes:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"rtml.test.{uuid.uuid4().hex[:10]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            value = None if message is None or message.error() else message.value()
            if value is not None:
                return value
    finally:
        consumer.close()
    raise AssertionError(f"nothing consumed from {topic} within {timeout_s}s")


def _cluster_id(bootstrap: str) -> str:
    return str(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).cluster_id)


def _settings(state_dir: Path, kafka_node: kafka.KafkaNode | None = None) -> Settings:
    """Settings whose local services live in ``state_dir`` on free ports."""
    kafka_port, controller_port, redis_port = process.free_ports(3)
    if kafka_node is not None:
        kafka_port, controller_port = kafka_node.port, kafka_node.controller_port
    infra_settings = InfraSettings(
        state_dir=state_dir,
        cache_dir=Settings().infra.cache_dir,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        redis_port=redis_port,
    )
    return Settings(infra=infra_settings)


@pytest.fixture
def no_external_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make up() provision locally even when the session uses external services."""
    for name in EXTERNAL_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.timeout(60)
def test_redis_starts_answers_ping_stops_and_restarts(throwaway_redis: LocalRedis) -> None:
    node = throwaway_redis.node
    pid = redis.running_pid(node)
    assert pid is not None
    assert redis.ping(throwaway_redis.url)

    throwaway_redis.stop()

    assert not process.is_alive(pid)
    assert not node.pid_file.exists()
    assert not redis.ping(throwaway_redis.url, timeout_s=0.5)
    throwaway_redis.start()
    assert redis.ping(throwaway_redis.url)


@pytest.mark.timeout(120)
def test_kafka_fixture_round_trips_one_message(kafka_bootstrap: str) -> None:
    topic = _topic(kafka_bootstrap)

    _produce(kafka_bootstrap, topic, b"hello")

    assert _consume_one(kafka_bootstrap, topic) == b"hello"


@pytest.mark.timeout(120)
def test_throwaway_kafka_restart_keeps_data_and_cluster_id(throwaway_kafka: LocalKafka) -> None:
    bootstrap = throwaway_kafka.bootstrap
    topic = _topic(bootstrap)
    _produce(bootstrap, topic, b"before restart")
    cluster_id = _cluster_id(bootstrap)

    throwaway_kafka.stop()
    assert not process.port_open("127.0.0.1", throwaway_kafka.node.port)
    # Both ends of the broker's life are logged (SLF4J binding and log4j2 shutdown hook).
    broker_log = throwaway_kafka.node.log_file.read_text()
    assert "Kafka Server started" in broker_log and "shut down completed" in broker_log
    throwaway_kafka.start()

    assert _cluster_id(bootstrap) == cluster_id
    assert _consume_one(bootstrap, topic) == b"before restart"


@pytest.mark.timeout(30)
def test_stop_refuses_a_pid_whose_command_line_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "other.pid"
    pid = process.start_detached(["sleep", "59.5"], pid_file=pid_file, log_file=tmp_path / "sleep.log")
    marker = str(tmp_path / "redis.conf")
    try:
        with pytest.raises(NotOurProcess, match=str(pid)):
            process.stop_pid(pid, marker)
        assert process.stop_process(pid_file, marker) is False
        assert process.is_alive(pid), "a process that is not ours was signalled"
        assert not pid_file.exists(), "the stale PID file should be dropped"
    finally:
        assert process.stop_pid(pid, "59.5", timeout_s=5) is True
    assert not process.is_alive(pid)


@pytest.mark.timeout(30)
def test_down_never_stops_a_foreign_process_named_by_our_pid_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    node = redis.RedisNode.from_settings(settings)
    pid = process.start_detached(["sleep", "59.5"], pid_file=node.pid_file, log_file=tmp_path / "sleep.log")
    try:
        infra.down(settings)
        assert process.is_alive(pid)
    finally:
        process.stop_pid(pid, "59.5", timeout_s=5)


@pytest.mark.timeout(30)
def test_missing_java_is_a_clear_prerequisite_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    port, controller_port = process.free_ports(2)
    node = kafka.KafkaNode(tmp_path / "kafka", port, controller_port, cache_dir=tmp_path / "cache")

    with pytest.raises(PrerequisiteMissing) as error:
        kafka.start(node, timeout_s=5)

    message = str(error.value)
    assert "`java` not found" in message
    assert "apt-get install -y openjdk-17-jre-headless maven" in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert not node.pid_file.exists()


@pytest.mark.timeout(30)
def test_missing_mvn_is_a_clear_prerequisite_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(PrerequisiteMissing, match=r"`mvn` not found.*apt-get install"):
        kafka.ensure_jars_in(tmp_path / "cache")


FAKE_APT_GET = """#!{python}
import pathlib, stat, sys
here = pathlib.Path(sys.argv[0]).parent
with open(here / "apt.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "install":
    server = here / "redis-server"
    server.write_text("#!/bin/sh\\n")
    server.chmod(server.stat().st_mode | stat.S_IEXEC)
"""


def _fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, euid: int) -> Path:
    """PATH holding only a fake apt-get; no redis-server anywhere."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt_get = bin_dir / "apt-get"
    apt_get.write_text(FAKE_APT_GET.format(python=sys.executable))
    apt_get.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(redis, "SEARCH_DIRS", ())
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    return bin_dir


def test_missing_redis_server_is_installed_with_apt_get_when_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_path(tmp_path, monkeypatch, euid=0)

    found = redis.find_redis_server()

    assert found == str(bin_dir / "redis-server")
    assert (bin_dir / "apt.log").read_text().splitlines() == ["update -q", "install -y -q redis-server"]


def test_missing_redis_server_is_a_clear_error_when_not_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_path(tmp_path, monkeypatch, euid=1000)

    with pytest.raises(PrerequisiteMissing, match=r"apt-get install -y redis-server.*REDIS_URL"):
        redis.find_redis_server()
    assert not (bin_dir / "apt.log").exists()


@pytest.mark.timeout(120)
def test_up_is_idempotent_and_down_stops_what_it_started(
    throwaway_kafka: LocalKafka, no_external_env: None, tmp_path: Path
) -> None:
    # no_external_env after throwaway_kafka: with external services the test skips, as the fixture does.
    # The throwaway broker lives in tmp_path/"kafka", which is where up() looks for ours.
    settings = _settings(tmp_path, throwaway_kafka.node)
    kafka_pid = kafka.running_pid(throwaway_kafka.node)

    first = infra.up(settings)
    redis_pid = redis.running_pid(redis.RedisNode.from_settings(settings))
    second = infra.up(settings)

    assert first == second == infra.InfraEndpoints(throwaway_kafka.bootstrap, first.redis_url)
    assert kafka.running_pid(throwaway_kafka.node) == kafka_pid
    assert redis.running_pid(redis.RedisNode.from_settings(settings)) == redis_pid
    running = infra.status(settings)
    assert running["kafka"]["pid"] == kafka_pid and running["kafka"]["reachable"]
    assert running["redis"]["pid"] == redis_pid and running["redis"]["reachable"]

    infra.down(settings)

    stopped = infra.status(settings)
    assert stopped["kafka"]["pid"] is None and not stopped["kafka"]["reachable"]
    assert stopped["redis"]["pid"] is None and not stopped["redis"]["reachable"]


@pytest.mark.timeout(120)
def test_up_only_checks_services_named_by_the_environment(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("REDIS_URL", redis_url)
    settings = _settings(tmp_path)

    endpoints = infra.up(settings)

    assert endpoints == infra.InfraEndpoints(kafka_bootstrap, redis_url)
    assert not (tmp_path / "kafka").exists() and not (tmp_path / "redis").exists()
    assert {s["source"] for s in infra.status(settings).values()} == {"external"}


@pytest.mark.timeout(30)
def test_up_fails_clearly_when_external_redis_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{process.free_ports(1)[0]}/0")

    with pytest.raises(ServiceUnreachable, match="did not answer PING") as error:
        infra.up(_settings(tmp_path))

    assert "hunter2" not in str(error.value)


def test_endpoints_repr_masks_the_redis_password() -> None:
    endpoints = infra.InfraEndpoints("127.0.0.1:9092", "redis://user:s3cret@cache:6379/0")

    assert "s3cret" not in repr(endpoints)
    assert "redis://user:***@cache:6379/0" in repr(endpoints)


def test_cluster_ids_have_the_kafka_uuid_format() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
