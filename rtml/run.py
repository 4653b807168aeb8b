"""``rtml run``: the whole system on one machine, for trying it out (``make run``).

Kafka and Redis (local processes unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL
point elsewhere), the demo models, two workers serving every model and the
gateway. Prints a working curl, then waits; Ctrl-C stops everything it started. A process that
dies meanwhile is restarted with backoff (rtml/supervise.py).

Each process it starts gets its own metrics port (:class:`MetricsPorts`, ``--worker-metrics-port``
once per worker, ``--drift-metrics-port``): no port is derived from another. If a process exits
while the others start, ``rtml run`` says which one, its exit code and the last lines of its log,
then stops the rest; once up, it restarts whatever dies.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from rtml import infra
from rtml.stack import Stack, wait_http_ok, wait_prediction_ok
from rtml.supervise import Supervisor
from runtime.errors import StartupFailed
from runtime.registry import ModelRegistry
from runtime.settings import Settings

log = logging.getLogger(__name__)

WORKERS = 2


@dataclass(frozen=True)
class MetricsPorts:
    """The Prometheus port of each process ``rtml run`` starts (0: that process serves none)."""

    workers: tuple[int, ...] = (9101, 9102)
    drift: int = 9111

    @classmethod
    def from_args(cls, workers: Sequence[int] | None, drift: int | None) -> MetricsPorts:
        default = cls()
        return cls(tuple(workers) if workers else default.workers, default.drift if drift is None else drift)

    def problem(self, gateway_port: int) -> str | None:
        """Why these ports cannot work, or None."""
        if len(self.workers) != WORKERS:
            given = len(self.workers)
            return (
                f"rtml run starts {WORKERS} workers: give --worker-metrics-port {WORKERS} times, not {given}"
            )
        used = [port for port in (*self.workers, self.drift, gateway_port) if port]
        if any(not 0 < port < 65536 for port in used):
            return f"ports must be 1..65535 (0: no metrics endpoint); got {used}"
        if len(set(used)) != len(used):
            return f"every process needs its own port; worker, drift and gateway ports are {used}"
        return None


def run_stack(settings: Settings, ports: MetricsPorts | None = None) -> int:
    ports = ports or MetricsPorts()
    if problem := ports.problem(settings.gateway.port):
        print(f"rtml run: {problem}", file=sys.stderr)
        return 2
    registry = ModelRegistry(settings.registry.root)
    if not registry.list_models():
        from importers.extras import missing_extra

        purpose = f"rtml run with no model in {settings.registry.root} (it trains the demo models)"
        if missing := missing_extra(purpose, "sklearn", "skl2onnx"):
            print(missing.message, file=sys.stderr)
            return 2
    uses_local_infra = not (infra.external_kafka() and infra.external_redis())
    endpoints = infra.up(settings)
    if not registry.list_models():
        from importers.demo_models import train_demo_models

        print("training demo models ...", flush=True)
        train_demo_models(registry)
    env = {
        "RTML_KAFKA__BOOTSTRAP_SERVERS": endpoints.bootstrap_servers,
        "RTML_REDIS__URL": endpoints.redis_url,
    }
    stack = Stack(env=env, log_dir=settings.infra.state_dir / "logs")
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        base = _start(stack, settings, ports)
        _print_banner(base, stack)
        return _watch(stack, stop)
    except StartupFailed as exc:
        print(f"rtml run could not start: {exc}", flush=True)
        return 1
    finally:
        print("stopping gateway and workers ...", flush=True)
        stack.stop_all()
        if uses_local_infra:
            infra.down(settings)
        print("stopped.", flush=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start(stack: Stack, settings: Settings, ports: MetricsPorts) -> str:
    """Start the workers, the drift app and the gateway; return the gateway's URL once a real
    prediction has gone through. Raises StartupFailed when any of them exits meanwhile."""
    for index, port in enumerate(ports.workers):
        stack.worker(f"worker-{index + 1}", ["all"], {"RTML_WORKER__METRICS_PORT": str(port)})
    stack.spawn("drift", ["drift"], {"RTML_DRIFT__METRICS_PORT": str(ports.drift)})
    gateway = stack.gateway()
    base = f"http://{settings.gateway.host}:{settings.gateway.port}"
    wait_http_ok(f"{base}/ready", timeout_s=60, child=gateway, watch=stack.children)
    # The gateway is ready before the workers have joined their groups: prove the printed
    # curl works (a real prediction through Kafka) before printing it.
    wait_prediction_ok(base, timeout_s=120, children=stack.children)
    return base


def _watch(stack: Stack, stop: threading.Event) -> int:
    """Until Ctrl-C: a process that dies is restarted with backoff (rtml/supervise.py)."""
    Supervisor(stack).watch(stop)
    return 0


def _print_banner(base: str, stack: Stack) -> None:
    print(
        f"""
rtml is up: gateway {base}, {WORKERS} workers, logs in {stack.log_dir}

  curl -s -X POST {base}/api/v1/predict -H 'Content-Type: application/json' \\
       -d '{{"model_name": "iris_classifier", "features": [5.1, 3.5, 1.4, 0.2]}}'

  models:  curl -s {base}/api/v1/models
  drift:   curl -s {base}/api/v1/models/iris_classifier/drift
  metrics: curl -s {base}/metrics
Press Ctrl-C to stop everything.
""",
        flush=True,
    )
