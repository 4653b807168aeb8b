"""The processes under test: local infra, the rtml stack in a fresh namespace, the baseline app.

Everything started here is stopped here, by PID: the stack's children through
:meth:`rtml.stack.Stack.stop_all`, the baseline through its own
:class:`rtml.stack.Child`, and local Kafka/Redis only if they were not already
running before the bench.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from bench.paths import REPO_ROOT
from rtml import infra
from rtml.infra import kafka as local_kafka
from rtml.infra import redis as local_redis
from rtml.infra.process import free_ports
from rtml.stack import Child, Stack, wait_http_ok
from runtime.registry import ModelRegistry
from runtime.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0


def free_port() -> int:
    return free_ports(1)[0]


@dataclass(frozen=True)
class Namespace:
    """Topic names, consumer groups and cache keys of one bench run (like tests/stack_fixtures)."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def request_prefix(self) -> str:
        return f"bench{self.tag}.requests."

    @property
    def predictions_topic(self) -> str:
        return f"bench{self.tag}.predictions"

    def request_topic(self, model: str) -> str:
        return f"{self.request_prefix}{model}"

    def group(self, model: str) -> str:
        return f"bench{self.tag}.workers.{model}"

    def env(self) -> dict[str, str]:
        return {
            "RTML_KAFKA__REQUEST_TOPIC_PREFIX": self.request_prefix,
            "RTML_KAFKA__PREDICTIONS_TOPIC": self.predictions_topic,
            "RTML_KAFKA__DLQ_TOPIC": f"bench{self.tag}.dlq",
            "RTML_KAFKA__REPLY_TOPIC_PREFIX": f"bench{self.tag}.replies.",
            "RTML_WORKER__GROUP_PREFIX": f"bench{self.tag}.workers.",
            "RTML_REDIS__KEY_PREFIX": f"bench{self.tag}:p:",
            "RTML_KAFKA__CONTROL_TOPIC": f"bench{self.tag}.control",
            "RTML_KAFKA__MODEL_EVENTS_TOPIC": f"bench{self.tag}.model-events",
            "RTML_KAFKA__ARTIFACTS_TOPIC": f"bench{self.tag}.artifacts",
            "RTML_REDIS__FLEET_PREFIX": f"bench{self.tag}:fleet:",
            "RTML_GATEWAY__INSTANCE_ID": f"bench-{self.tag}",
        }


def ensure_models(settings: Settings, models: list[str]) -> ModelRegistry:
    """The demo models in the configured registry, trained (as `rtml models train-demo`) if absent."""
    registry = ModelRegistry(settings.registry.root)
    missing = [m for m in models if m not in registry.list_models()]
    if missing:
        from importers.demo_models import train_demo_models

        print(f"training demo models (missing: {', '.join(missing)}) ...", flush=True)
        train_demo_models(registry)
    return registry


@dataclass
class Infra:
    """Kafka and Redis endpoints, and which local services this bench started (to stop them)."""

    bootstrap: str
    redis_url: str
    started: list[str]

    @classmethod
    def up(cls, settings: Settings) -> Infra:
        """Check ``infra.status`` first: only local services not running yet are ours to stop later."""
        before = infra.status(settings)
        ours = [
            name
            for name, status in before.items()
            if status["source"] == "local" and status["pid"] is None and not status["reachable"]
        ]
        try:
            endpoints = infra.up(settings)
        except BaseException:
            cls("", "", ours).down(settings)
            raise
        return cls(endpoints.bootstrap_servers, endpoints.redis_url, ours)

    def down(self, settings: Settings) -> None:
        """Stop only what :meth:`up` started (``infra.down`` would stop both)."""
        if "kafka" in self.started:
            local_kafka.stop(local_kafka.KafkaNode.from_settings(settings))
        if "redis" in self.started:
            local_redis.stop(local_redis.RedisNode.from_settings(settings))


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def loopback_port(address: str) -> int | None:
    """The port of a loopback ``host:port`` or ``redis://host:port/...`` address, else None."""
    parts = urlsplit(address if "://" in address else f"kafka://{address.split(',')[0]}")
    try:
        port = parts.port
    except ValueError:
        return None
    return port if parts.hostname in LOOPBACK else None


def infra_processes(settings: Settings) -> dict[str, int]:
    """PIDs of the Kafka broker and Redis on this machine, to count their CPU: "broker", "redis".

    ``infra.status`` gives PIDs only for services it manages (source "local"); when
    KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are set it reports them as external without a PID, even
    when they are this checkout's own local services started earlier (``rtml infra up``). Then
    the PID files under ``settings.infra.state_dir`` (checked against the process's command
    line by ``running_pid``) name them, if the external address is that node's loopback port.
    """
    status = infra.status(settings)
    kafka_node = local_kafka.KafkaNode.from_settings(settings)
    redis_node = local_redis.RedisNode.from_settings(settings)
    found = {"broker": status["kafka"]["pid"], "redis": status["redis"]["pid"]}
    if found["broker"] is None and _ours_externally(status["kafka"], kafka_node.port):
        found["broker"] = local_kafka.running_pid(kafka_node)
    if found["redis"] is None and _ours_externally(status["redis"], redis_node.port):
        found["redis"] = local_redis.running_pid(redis_node)
    return {name: pid for name, pid in found.items() if pid is not None}


def _ours_externally(service: infra.ServiceStatus, node_port: int) -> bool:
    return service["source"] == "external" and loopback_port(service["address"]) == node_port


@dataclass
class RtmlStack:
    base_url: str
    namespace: Namespace
    stack: Stack
    gateway: Child
    workers: list[Child]
    worker_metrics_urls: list[str]

    @property
    def gateway_metrics_url(self) -> str:
        return f"{self.base_url}/metrics"

    def stop(self) -> None:
        self.stack.stop_all()


def start_stack(
    bootstrap: str,
    redis_url: str,
    registry_root: Path,
    models: list[str],
    workers: int,
    log_dir: Path,
    partitions: int = 4,
    gateways: int = 1,
) -> RtmlStack:
    """Workers (each serving ``models``, metrics on a free port) and one gateway, all ready, and
    every model's consumer group settled (``partitions``: of each request topic)."""
    namespace = Namespace()
    # Picked together so the kernel cannot hand the same just-released port to two processes.
    port, *metrics_ports = free_ports(1 + workers)
    env = {
        "RTML_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RTML_REDIS__URL": redis_url,
        "RTML_REGISTRY__ROOT": str(registry_root),
        "RTML_GATEWAY__PORT": str(port),
        "RTML_GATEWAY__PROCESSES": str(gateways),
        **namespace.env(),
    }
    stack = Stack(env=env, log_dir=log_dir)
    base_url = f"http://127.0.0.1:{port}"
    try:
        urls, children = [], []
        for index, metrics_port in enumerate(metrics_ports):
            urls.append(f"http://127.0.0.1:{metrics_port}/metrics")
            extra = {"RTML_WORKER__METRICS_PORT": str(metrics_port)}
            children.append(stack.worker(f"worker-{index + 1}", models, extra))
        gateway = stack.gateway()
        wait_http_ok(f"{base_url}/ready", timeout_s=READY_TIMEOUT_S, child=gateway)
        wait_for_gateways(base_url, gateways, READY_TIMEOUT_S)
        for url, child in zip(urls, children, strict=True):
            wait_http_ok(url, timeout_s=READY_TIMEOUT_S, child=child)
        groups = [namespace.group(m) for m in models]
        wait_for_groups(bootstrap, groups, min(workers, partitions), READY_TIMEOUT_S)
    except BaseException:
        stack.stop_all()
        raise
    return RtmlStack(base_url, namespace, stack, gateway, children, urls)


def wait_for_gateways(base_url: str, processes: int, timeout_s: float) -> None:
    """Until ``processes`` distinct gateway instances have answered /ready (each probe on a fresh
    connection, which the kernel hands to one of the processes sharing the port)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < processes:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(seen)} of {processes} gateway processes ready after {timeout_s:.0f} s")
        try:
            with urllib.request.urlopen(f"{base_url}/ready", timeout=5) as response:
                seen.add(orjson.loads(response.read())["instance_id"])
        except OSError:
            time.sleep(0.2)


def wait_for_groups(bootstrap: str, groups: list[str], members: int, timeout_s: float) -> None:
    """Until every worker group is STABLE with all ``members`` holding partitions: /ready says the
    gateway can serve, but requests on partitions not yet assigned (the broker delays the first
    rebalance) would wait seconds and land in the first scenario's tail latency."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    pending = list(groups)
    while pending:
        futures = admin.describe_consumer_groups(pending, request_timeout=5)
        pending = [group for group, future in futures.items() if not _settled(future.result(), members)]
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"worker groups not stable after {timeout_s:.0f} s: {pending}")
        if pending:
            time.sleep(0.5)


def _settled(description: Any, members: int) -> bool:
    assigned = [m for m in description.members if m.assignment.topic_partitions]
    return description.state == ConsumerGroupState.STABLE and len(assigned) >= members


def start_baseline(model_dir: Path, log_dir: Path) -> tuple[Child, str]:
    """``python -m bench.baseline_app`` on a free port, ready; returns the child and its base URL."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "baseline.log"
    with log_path.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_app", "--model-dir", str(model_dir), "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    child = Child("baseline", process, log_path)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base_url}/health", timeout_s=READY_TIMEOUT_S, child=child)
    except BaseException:
        child.stop()
        raise
    return child, base_url
