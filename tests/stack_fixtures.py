"""rtml's own processes (gateway, workers) on the test Kafka and Redis.

Every stack gets a fresh namespace: its own topic names, consumer groups, reply
topics and cache-key prefix, so stacks and test sessions never see each other's
messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rtml.infra.process import free_ports
from rtml.stack import Child, Stack, wait_http_ok
from runtime.registry import ModelRegistry
from tests.model_fixtures import DemoModels

SERVED_MODELS = ["iris_classifier", "binary_classifier", "fraud_detector"]
UNSERVED_MODEL = "churn_classifier"  # registered, but no worker serves it: requests time out


def free_port() -> int:
    return free_ports(1)[0]


@dataclass
class Namespace:
    """Topic names and prefixes of one stack, as the processes see them through RTML_* variables."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def request_prefix(self) -> str:
        return f"t{self.tag}.requests."

    @property
    def predictions_topic(self) -> str:
        return f"t{self.tag}.predictions"

    @property
    def dlq_topic(self) -> str:
        return f"t{self.tag}.dlq"

    @property
    def drift_prefix(self) -> str:
        return f"t{self.tag}:drift:"

    @property
    def reply_prefix(self) -> str:
        return f"t{self.tag}.replies."

    @property
    def control_topic(self) -> str:
        return f"t{self.tag}.control"

    @property
    def events_topic(self) -> str:
        return f"t{self.tag}.model-events"

    @property
    def fleet_prefix(self) -> str:
        return f"t{self.tag}:fleet:"

    def env(self) -> dict[str, str]:
        return {
            "RTML_KAFKA__REQUEST_TOPIC_PREFIX": self.request_prefix,
            "RTML_KAFKA__PREDICTIONS_TOPIC": self.predictions_topic,
            "RTML_KAFKA__DLQ_TOPIC": self.dlq_topic,
            "RTML_KAFKA__REPLY_TOPIC_PREFIX": self.reply_prefix,
            "RTML_KAFKA__CONTROL_TOPIC": self.control_topic,
            "RTML_KAFKA__MODEL_EVENTS_TOPIC": self.events_topic,
            "RTML_KAFKA__ARTIFACTS_TOPIC": f"t{self.tag}.artifacts",
            "RTML_REDIS__FLEET_PREFIX": self.fleet_prefix,
            "RTML_REDIS__KEYS_PREFIX": f"t{self.tag}:keys:",
            "RTML_REDIS__LIMITS_PREFIX": f"t{self.tag}:rl:",
            "RTML_KAFKA__REQUEST_PARTITIONS": "4",
            "RTML_KAFKA__LOG_PARTITIONS": "2",
            "RTML_WORKER__GROUP_PREFIX": f"t{self.tag}.workers.",
            "RTML_REDIS__KEY_PREFIX": f"t{self.tag}:p:",
            "RTML_DRIFT__REDIS_PREFIX": self.drift_prefix,
        }


@dataclass
class RunningStack:
    base_url: str
    bootstrap: str
    redis_url: str
    namespace: Namespace
    registry: ModelRegistry
    stack: Stack
    gateway: Child
    workers: list[Child]
    worker_metrics_urls: list[str]

    def request_topic(self, model: str) -> str:
        return f"{self.namespace.request_prefix}{model}"

    def group(self, model: str) -> str:
        return f"t{self.namespace.tag}.workers.{model}"


@pytest.fixture(scope="session")
def registry_root(demo_models: DemoModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models in a private registry, with an extra iris_classifier v2 so version routing
    can be tested."""
    registry = demo_models.copy(tmp_path_factory.mktemp("registry"), *SERVED_MODELS, UNSERVED_MODEL)
    v1 = registry.metadata("iris_classifier", "1")
    registry.register(registry.model_path("iris_classifier", "1").read_bytes(), v1.with_updates(version="2"))
    return registry.root


StackFactory = Callable[..., RunningStack]


@pytest.fixture(scope="session")
def stack_factory(
    kafka_bootstrap: str, redis_url: str, registry_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackFactory]:
    started: list[Stack] = []

    def start(
        *,
        workers: int = 2,
        models: list[str] | None = None,
        bootstrap: str | None = None,
        redis: str | None = None,
        extra_env: dict[str, str] | None = None,
        registry: Path | None = None,
        cafile: str | None = None,
    ) -> RunningStack:
        """``registry``: a private registry root for a test that changes it (default: the shared one).
        ``cafile``: the gateway serves HTTPS (``extra_env`` sets its certificate), verified with it."""
        namespace = Namespace()
        root = registry or registry_root
        bootstrap = bootstrap or kafka_bootstrap
        redis = redis or redis_url
        # All ports of one stack are picked together: picked one by one, the kernel may hand out
        # a just-released port twice (a worker then holds the gateway's port and the gateway fails).
        port, *metrics_ports = free_ports(1 + workers)
        env = {
            "RTML_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "RTML_REDIS__URL": redis,
            "RTML_REGISTRY__ROOT": str(root),
            "RTML_GATEWAY__PORT": str(port),
            "RTML_GATEWAY__INSTANCE_ID": f"gw-{namespace.tag}",
            "RTML_ENV": "test",
            **namespace.env(),
            **(extra_env or {}),
        }
        stack = Stack(env=env, log_dir=tmp_path_factory.mktemp(f"logs-{namespace.tag}"))
        started.append(stack)
        metrics_urls = []
        worker_children = []
        for index, metrics_port in enumerate(metrics_ports):
            metrics_urls.append(f"http://127.0.0.1:{metrics_port}/metrics")
            worker_children.append(
                stack.worker(
                    f"worker-{index}",
                    models or SERVED_MODELS,
                    {"RTML_WORKER__METRICS_PORT": str(metrics_port)},
                )
            )
        gateway = stack.gateway()
        base_url = f"{'https' if cafile else 'http'}://127.0.0.1:{port}"
        wait_http_ok(f"{base_url}/ready", timeout_s=60, child=gateway, cafile=cafile)
        for url, child in zip(metrics_urls, worker_children, strict=True):
            wait_http_ok(url, timeout_s=60, child=child)
        return RunningStack(
            base_url,
            bootstrap,
            redis,
            namespace,
            ModelRegistry(root),
            stack,
            gateway,
            worker_children,
            metrics_urls,
        )

    yield start
    for stack in started:
        stack.stop_all()


@pytest.fixture(scope="session")
def stack(stack_factory: StackFactory) -> RunningStack:
    """The shared stack: two workers serving the served models, one gateway."""
    return stack_factory()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing stack test carries the last log lines of the stack's processes, so a failure on
    CI (where the log files are gone afterwards) says what the gateway and workers saw."""
    report: pytest.TestReport = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in funcargs.values():
            if isinstance(value, RunningStack):
                for child in value.stack.children:
                    report.sections.append((f"log of {child.name}", child.log_tail(40)))
    return report
