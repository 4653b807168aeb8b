"""Pytest plugin: a real Kafka broker and Redis server for tests.

Where they come from, first match wins (per service):

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` in the environment: used as they are;
2. a reachable Docker engine: testcontainers;
3. otherwise processes provisioned by :mod:`rtml.infra` on free ports in a session
   temp dir (jars cached in the project's ``.cache``), stopped at session end.

``throwaway_redis`` / ``throwaway_kafka`` give one test a private server it may stop
and restart; they always use local processes and skip when the environment points
at external services.
"""

from __future__ import annotations

import functools
import gc
import importlib
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtml.infra import external_kafka, external_redis, kafka, redis
from rtml.infra.process import free_ports, is_alive
from runtime.errors import PrerequisiteMissing
from runtime.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
REDIS_IMAGE = "redis:7"
KAFKA_FIXTURES = frozenset({"kafka_bootstrap", "throwaway_kafka"})
REDIS_FIXTURES = frozenset({"redis_url", "throwaway_redis"})


class LocalRedis:
    """A private redis-server that a test may stop and start again."""

    def __init__(self, node: redis.RedisNode) -> None:
        self.node = node

    @property
    def url(self) -> str:
        return self.node.url

    def start(self) -> None:
        redis.start(self.node)

    def stop(self) -> None:
        redis.stop(self.node)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer would: no save, no goodbye to clients."""
        _kill(redis.running_pid(self.node))


class LocalKafka:
    """A private broker that a test may stop and start again (same data, same cluster id)."""

    def __init__(self, node: kafka.KafkaNode) -> None:
        self.node = node

    @property
    def bootstrap(self) -> str:
        return self.node.bootstrap

    def start(self) -> None:
        kafka.start(self.node, jvm_opts=kafka.QUICK_START_JVM_OPTS)

    def stop(self) -> None:
        kafka.stop(self.node)

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown; the next start recovers the log from disk."""
        _kill(kafka.running_pid(self.node))


def _kill(pid: int | None) -> None:
    assert pid is not None, "the server is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} survived SIGKILL"
        time.sleep(0.05)


def _cache_dir() -> Path:
    """The developer's jar cache, so test sessions never download the jars again."""
    return Settings().infra.cache_dir


@functools.cache
def docker_available() -> bool:
    """A Docker engine answers a ping within a few seconds."""
    if not os.environ.get("DOCKER_HOST") and not Path(DEFAULT_DOCKER_SOCKET).exists():
        return False  # where the SDK would look; skips it entirely on engine-less machines
    with warnings.catch_warnings():
        # The SDK leaks its socket when the engine is down; collect it while silenced,
        # or the ResourceWarning fails whichever later test triggers the GC.
        warnings.simplefilter("ignore", ResourceWarning)
        answered = _ping_docker()
        gc.collect()
    return answered


def _ping_docker() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _container_class(name: str, *modules: str) -> Any:
    """testcontainers >= 4.10 moved these to testcontainers.community (old path warns)."""
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:
            continue
    raise ImportError(f"{name} not found in {modules}")


def _kafka_node(state_dir: Path) -> kafka.KafkaNode:
    port, controller_port = free_ports(2)
    return kafka.KafkaNode(state_dir, port, controller_port, _cache_dir())


def _redis_node(state_dir: Path) -> redis.RedisNode:
    return redis.RedisNode(state_dir, free_ports(1)[0])


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker shared by the session."""
    external = external_kafka()
    if external is not None:
        yield external
    elif docker_available():
        cls = _container_class("KafkaContainer", "testcontainers.community.kafka", "testcontainers.kafka")
        with cls(KAFKA_IMAGE).with_kraft() as container:
            yield str(container.get_bootstrap_server())
    else:
        broker = LocalKafka(_kafka_node(tmp_path_factory.mktemp("kafka")))
        try:
            broker.start()
            yield broker.bootstrap
        finally:
            broker.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server shared by the session."""
    external = external_redis()
    if external is not None:
        yield external
    elif docker_available():
        cls = _container_class("RedisContainer", "testcontainers.community.redis", "testcontainers.redis")
        with cls(REDIS_IMAGE) as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
    else:
        server = LocalRedis(_redis_node(tmp_path_factory.mktemp("redis")))
        try:
            server.start()
            yield server.url
        finally:
            server.stop()


def _skip_unless_local(external: str | None, fixture: str, env: str) -> None:
    if external is not None:
        pytest.skip(f"{fixture} needs a locally provisioned server, but {env} points at an external one")


def _start_or_skip(handle: LocalKafka | LocalRedis, fixture: str) -> None:
    """Where Docker serves the session, missing local programs skip instead of failing."""
    try:
        handle.start()
    except PrerequisiteMissing as exc:
        if not docker_available():
            raise
        pytest.skip(f"{fixture}: {exc}")


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A private redis-server for tests that stop or break it."""
    _skip_unless_local(external_redis(), "throwaway_redis", "REDIS_URL")
    server = LocalRedis(_redis_node(tmp_path / "redis"))
    try:
        _start_or_skip(server, "throwaway_redis")
        yield server
    finally:
        server.stop()


@pytest.fixture
def throwaway_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    """A private broker for tests that stop or break it (restart keeps data and cluster id)."""
    _skip_unless_local(external_kafka(), "throwaway_kafka", "KAFKA_BOOTSTRAP_SERVERS")
    broker = LocalKafka(_kafka_node(tmp_path / "kafka"))
    try:
        _start_or_skip(broker, "throwaway_kafka")
        yield broker
    finally:
        broker.stop()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fetch jars / install redis-server before the first test, outside per-test timeouts.

    Failures are only logged: the fixture that needs the program raises them again.
    """
    if session.config.option.collectonly:
        return
    wanted: set[str] = set()
    for item in session.items:
        wanted.update(getattr(item, "fixturenames", ()))
    try:
        if _needs_local(wanted, KAFKA_FIXTURES, external_kafka()):
            kafka.ensure_jars_in(_cache_dir())
        if _needs_local(wanted, REDIS_FIXTURES, external_redis()):
            redis.find_redis_server(install=True)
    except Exception as exc:
        log.warning("preparing local test infrastructure failed: %s", exc)


def _needs_local(wanted: set[str], fixtures: frozenset[str], external: str | None) -> bool:
    """Local programs serve throwaway servers always, the session one only without Docker."""
    if external is not None or not wanted & fixtures:
        return False
    throwaway = any(name.startswith("throwaway_") for name in wanted & fixtures)
    return throwaway or not docker_available()
