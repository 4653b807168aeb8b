"""The worker process: ``rtml worker --model NAME`` (or ``python -m workers.main --model NAME``).

One :class:`workers.loop.ModelWorker` thread per model served; SIGTERM/SIGINT stop every loop,
which drains its in-flight batches, commits and leaves its group before the process exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.logs import configure_logging
from runtime.settings import Settings, load_settings

if TYPE_CHECKING:
    from schemas.control import ModelPolicy
    from workers.loop import RunLimits

log = logging.getLogger(__name__)


def run_worker_process(settings: Settings, models: list[str], limits: RunLimits | None = None) -> None:
    """Serve ``models`` (names, or ["all"]) until SIGTERM/SIGINT or the limits; one thread per model."""
    # Imported here, not at the top: `rtml`'s argument parser imports this module, and every other
    # command would pay for loading onnxruntime and librdkafka.
    from runtime.canary import CanaryController
    from runtime.control import ControlView, ControlWriter
    from runtime.fleet import FleetReporter
    from runtime.kafka import control_topics, ensure_topics, serving_topics
    from runtime.memory import freeze_startup_objects, limit_malloc_arenas
    from runtime.model_admin import ModelAdmin
    from runtime.probe_server import serve_probes
    from runtime.registry import ModelRegistry
    from runtime.tracing import start_tracing
    from workers.cache import WorkerCache
    from workers.loop import ModelWorker, RunLimits
    from workers.metrics import SERVED
    from workers.probes import WorkerProbes

    run_limits = limits or RunLimits()
    limit_malloc_arenas(settings.worker.malloc_arenas)  # before any thread starts
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    ensure_topics(settings.kafka, control_topics(settings.kafka))
    by_model: dict[str, ModelWorker] = {}

    def apply(policy: ModelPolicy) -> None:
        worker = by_model.get(policy.model)
        if worker is not None:
            worker.apply(policy)

    # Read every model's policy before serving: a worker must not guess which version is default.
    control = ControlView(settings.kafka, f"{worker_id}-control", on_change=apply)
    control.start()
    if models == ["all"]:  # registered here, or recorded by the control plane (fetched on load)
        local = ModelRegistry(settings.registry.root).list_models()
        models = sorted(set(local) | {name for name, p in control.policies().items() if p.versions})
    ensure_topics(settings.kafka, serving_topics(settings.kafka, models))
    stop = threading.Event()
    probes = WorkerProbes(stop)
    if settings.worker.metrics_port:  # /metrics, /health and /ready (workers/probes.py)
        serve_probes(probes, settings.worker.metrics_host, settings.worker.metrics_port)
    cache = WorkerCache(settings.redis)
    _install_signal_handlers(stop)
    tracing = start_tracing(settings.tracing, "worker")  # None when off: decided once, here
    workers = [
        ModelWorker(settings, model, cache, worker_id, control.policy(model), tracing) for model in models
    ]
    by_model.update((worker.model, worker) for worker in workers)
    for worker in workers:  # a change that arrived while the workers were being built
        if (policy := control.policy(worker.model)) is not None and policy != worker.runtimes.policy:
            worker.apply(policy)
    fleet = FleetReporter(
        settings.redis,
        "worker",
        worker_id,
        lambda: {worker.model: worker.runtimes.loaded for worker in workers},
        SERVED,
    )
    fleet.start()
    writer = ControlWriter(settings.kafka, f"{worker_id}-control-writer")
    admin = ModelAdmin(ModelRegistry(settings.registry.root), writer, control.policy, f"worker {worker_id}")
    canary = CanaryController(settings.redis, worker_id, control, admin)
    canary.start()  # any live process drives a running canary (one at a time: a Redis lease)
    freeze_startup_objects()  # models, sessions and clients live as long as the process
    failed: list[str] = []

    def serve(worker: ModelWorker) -> None:
        try:
            worker.run(stop, run_limits)
        except BaseException:
            # A model thread that dies must not leave a process that looks alive but serves
            # nothing: stop every model and exit non-zero so the supervisor restarts us.
            log.exception("model worker crashed; stopping the process", extra={"model": worker.model})
            failed.append(worker.model)
            stop.set()

    threads = [
        threading.Thread(target=serve, args=(worker,), name=f"worker-{worker.model}") for worker in workers
    ]
    for worker, thread in zip(workers, threads, strict=True):
        thread.start()
        probes.watch(worker.model, thread, worker.stats_at)
    probes.started()
    log.info("worker started", extra={"models": models, "worker": worker_id})
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
    canary.stop()
    writer.close()
    fleet.stop()
    control.stop()
    cache.close()
    if tracing is not None:
        tracing.shutdown()  # export the spans still queued
    if failed:
        raise SystemExit(f"worker {worker_id}: model thread(s) crashed: {', '.join(failed)}")
    log.info("worker stopped", extra={"worker": worker_id})


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        log.info("stopping on signal", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, help="model name, or 'all'; repeatable")
    parser.add_argument("--max-messages", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="local model registry (default: registry.root); may start empty: every version the control "
        "topic records is fetched from the artifact topic and verified by checksum",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    from workers.loop import RunLimits

    if args.models_dir is not None:
        registry = settings.registry.model_copy(update={"root": args.models_dir.resolve()})
        settings = settings.model_copy(update={"registry": registry})

    run_worker_process(settings, args.model, RunLimits(args.max_messages, args.idle_timeout))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rtml worker", description="Serve models from their request topics."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, process="worker")
    return run(settings, args)


if __name__ == "__main__":
    sys.exit(main())
