"""``rtml run``: the whole system on one machine, for trying it out (``make run``).

Kafka and Redis (local processes unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL
point elsewhere), the demo models, two workers serving every model and the
gateway. Prints a working curl, then waits; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import logging
import signal
import threading

from rtml import infra
from rtml.stack import Stack, wait_http_ok, wait_prediction_ok
from runtime.registry import ModelRegistry
from runtime.settings import Settings

log = logging.getLogger(__name__)

WORKERS = 2
FIRST_WORKER_METRICS_PORT = 9101


def run_stack(settings: Settings) -> int:
    uses_local_infra = not (infra.external_kafka() and infra.external_redis())
    endpoints = infra.up(settings)
    registry = ModelRegistry(settings.registry.root)
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
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        first_port = settings.worker.metrics_port or FIRST_WORKER_METRICS_PORT
        for index in range(WORKERS):
            port = str(first_port + index)
            stack.worker(f"worker-{index + 1}", ["all"], {"RTML_WORKER__METRICS_PORT": port})
        stack.spawn("drift", ["drift"], {"RTML_DRIFT__METRICS_PORT": str(first_port + WORKERS + 8)})
        gateway = stack.gateway()
        base = f"http://{settings.gateway.host}:{settings.gateway.port}"
        wait_http_ok(f"{base}/ready", timeout_s=60, child=gateway)
        # The gateway is ready before the workers have joined their groups: prove the printed
        # curl works (a real prediction through Kafka) before printing it.
        wait_prediction_ok(base, timeout_s=120, children=stack.children)
        _print_banner(base, stack)
        while not stop.wait(1.0):
            dead = [child.name for child in stack.children if not child.alive]
            if dead:
                print(f"stopping: {', '.join(dead)} exited; see logs in {stack.log_dir}", flush=True)
                return 1
        return 0
    finally:
        print("stopping gateway and workers ...", flush=True)
        stack.stop_all()
        if uses_local_infra:
            infra.down(settings)
        print("stopped.", flush=True)


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
