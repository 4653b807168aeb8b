"""``python -m bench.run``: the whole rtml benchmark in one invocation (``make bench``).

Phases, in order (each child stopped by PID before the next phase):

1. (e) baseline: ``bench/baseline_app.py`` serving iris_classifier, wrk at each concurrency;
   (m) the peer, MLServer 1.7 with adaptive batching (``bench/peer_mlserver.py``, own venv), the same;
2. local Kafka + Redis via ``rtml.infra.up`` (or KAFKA_BOOTSTRAP_SERVERS / REDIS_URL), then
   workers + gateway in a fresh topic namespace on their own ports; then ``--idle-seconds``
   without traffic: the stack's idle CPU;
3. (a) predict with unique features (cache misses), then open-loop misses (``bench/openloop``,
   latency from each request's scheduled time) at ``--open-loop-share`` of the (a) c64 req/s
   (the baseline ran the same at that share of its own c64 in phase 1), (b) predict with one
   feature vector (cache hits), (c) batch_predict of 64 rows, all with wrk; gateway cache
   counters and worker batch sizes scraped around every run;
4. (d) direct Kafka producers (iris_classifier, fraud_detector; 1 and 16 rows/message);
5. RSS of every process; after a 5 s settle, idle CPU again; tables, ratios to the baseline,
   PASS/MISS against the targets; ``bench/out/results-<stamp>.json`` and ``.md``.

Every measured run also reads the CPU of the processes under test (the baseline; or gateway,
workers, Kafka broker and Redis, each with its child processes) from /proc: CPU per answered
request (per prediction for (d)), in total and by process.

``--quick`` shortens every run to 2 s (idle measurements to 5 s) for development.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import kafka_direct, machine, open_loop, peer_mlserver, report, wrk
from bench.http_load import HttpCase, HttpPlan, run_case
from bench.observe import Snapshot, memory_mb
from bench.paths import REPO_ROOT
from bench.services import (
    Infra,
    RtmlStack,
    ensure_models,
    infra_processes,
    loopback_port,
    start_baseline,
    start_stack,
)
from bench.wrk import ensure_wrk, wrk_version
from rtml.stack import Child
from runtime.registry import ModelRegistry
from runtime.settings import Settings, load_settings

HTTP_MODEL = "iris_classifier"
DIRECT_MODELS = ["iris_classifier", "fraud_detector"]
OUT_DIR = REPO_ROOT / "bench" / "out"
SETTLE_S = 5.0
"""Pause after the last load before the second idle measurement."""
WARM_CHUNK_S = 5.0
WARM_MAX_S = 90.0
WARM_JIT_SHARE = 0.05
"""The stack is warm once the broker's JIT used under 5% of a core over a warm-up chunk."""
QUIET_CHUNK_S = 5.0
QUIET_MAX_S = 60.0
QUIET_JIT_SHARE = 0.005
"""Before the first idle window, the settle lasts until the broker's JIT used under 0.5% of a core
over QUIET_CHUNK_S (at most QUIET_MAX_S): a broker in service finished compiling long ago."""
OPEN_LOOP_BASE = 64
"""The (a) concurrency whose req/s sets the open-loop rate (else the highest one run)."""


@dataclass(frozen=True)
class Config:
    scenarios: frozenset[str]
    concurrency: list[int]
    batch_concurrency: list[int]
    http: HttpPlan
    direct_rows: list[int]
    direct_target_s: float
    direct_max_predictions: int
    workers: int
    gateways: int
    wait_quiet_s: float
    idle_s: float
    settle_s: float
    open_loop_share: float


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 s warm-up (development)")
    parser.add_argument("--repeat", type=int, default=1, choices=[1, 2, 3], help="runs per case (medians)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per case (default 2)")
    parser.add_argument("--concurrency", default="1,16,64", help="wrk connections for predict")
    parser.add_argument("--batch-concurrency", default="1,16", help="wrk connections for batch_predict")
    parser.add_argument("--batch-rows", type=int, default=64)
    parser.add_argument("--direct-rows", default="1,16", help="rows per direct Kafka message")
    parser.add_argument("--direct-seconds", type=float, default=None, help="target work per (d) run (5)")
    parser.add_argument(
        "--direct-max-predictions",
        type=int,
        default=1_500_000,
        help="cap on one (d) run (its size aims at --direct-seconds of work; 400k cut 16-row runs to 3 s)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (each serves all models)")
    parser.add_argument("--gateways", type=int, default=1, help="gateway processes sharing the port")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--only", default="a,b,c,d,e,m", help="scenarios to run, e.g. 'a,e'")
    parser.add_argument(
        "--idle-seconds", type=float, default=None,
        help="no-traffic CPU measurement before and after the load (default 10; --quick 5; 0 skips)",
    )  # fmt: skip
    parser.add_argument(
        "--open-loop-share", type=float, default=0.8,
        help="open-loop rate as a share of the (a) and (e) c64 req/s, after each (0 skips)",
    )  # fmt: skip
    parser.add_argument(
        "--wait-quiet", type=float, default=0, metavar="S",
        help="first wait up to S seconds for no other Kafka broker and 1-min load < 1.0",
    )  # fmt: skip
    return parser.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def config_from(args: argparse.Namespace) -> Config:
    duration = args.duration if args.duration is not None else (2.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    return Config(
        scenarios=frozenset(s.strip() for s in args.only.split(",")),
        concurrency=_ints(args.concurrency),
        batch_concurrency=_ints(args.batch_concurrency),
        http=HttpPlan(duration, warmup, args.repeat, args.wrk_threads, HTTP_MODEL, 0, args.batch_rows),
        direct_rows=_ints(args.direct_rows),
        direct_target_s=args.direct_seconds or (2.0 if args.quick else 5.0),
        direct_max_predictions=args.direct_max_predictions,
        workers=args.workers,
        gateways=args.gateways,
        wait_quiet_s=args.wait_quiet,
        idle_s=args.idle_seconds if args.idle_seconds is not None else (5.0 if args.quick else 10.0),
        settle_s=SETTLE_S,
        open_loop_share=args.open_loop_share,
    )


@dataclass
class Run:
    """Everything measured so far, in the shape written to results-<stamp>.json."""

    config: Config
    settings: Settings
    registry: ModelRegistry
    log_dir: Path
    cases: list[HttpCase]
    direct: list[dict[str, Any]]
    memory: dict[str, dict[str, dict[str, float | None]]]
    phases: dict[str, float]
    cpu: machine.CpuAccount
    open_loop: list[dict[str, Any]] = field(default_factory=list)
    idle: dict[str, dict[str, Any]] = field(default_factory=dict)
    warm_up: dict[str, Any] = field(default_factory=dict)
    """How long the stack was warmed before the first measurement, and why it stopped."""
    jit_settle: dict[str, Any] = field(default_factory=dict)
    """How long the first idle window waited for the broker's JIT to go quiet (:func:`settle_jit`)."""
    processes: dict[str, dict[str, int]] = field(default_factory=dict)
    """PIDs whose CPU was read, per system ("baseline", "rtml")."""

    def phase(self, name: str, started: float) -> None:
        self.phases[name] = round(time.monotonic() - started, 1)


def run_baseline(run: Run) -> None:
    started = time.monotonic()
    version = run.registry.latest(HTTP_MODEL)
    child, base_url = start_baseline(run.registry.root / HTTP_MODEL / version, run.log_dir)
    try:
        print(f"(e) baseline at {base_url}", flush=True)
        run.processes["baseline"] = {"baseline": child.process.pid}
        plan, probe = run.config.http, machine.CpuProbe(run.processes["baseline"])
        for concurrency in run.config.concurrency:
            run.cases.append(run_case(base_url, "baseline", "e_predict", concurrency, plan, probe=probe))
        if "a" in run.config.scenarios:  # the reference for rtml's open-loop run
            run_open_loop(run, "baseline", "e_predict", base_url, None, probe)
        for concurrency in run.config.batch_concurrency:
            run.cases.append(run_case(base_url, "baseline", "e_batch", concurrency, plan, probe=probe))
        run.memory["baseline_after_load"] = {"baseline": memory_mb(child.process.pid)}
    finally:
        child.stop()
    run.phase("baseline", started)


def run_rtml(run: Run) -> None:
    started = time.monotonic()
    services = Infra.up(run.settings)
    run.phase("infra_up", started)
    try:
        started = time.monotonic()
        stack = start_stack(
            services.bootstrap,
            services.redis_url,
            run.registry.root,
            sorted(set(DIRECT_MODELS) | {HTTP_MODEL}),
            run.config.workers,
            run.log_dir,
            run.settings.kafka.request_partitions,
            run.config.gateways,
        )
        run.phase("stack_start", started)
        infra_pids = infra_processes(run.settings)
        if set(infra_pids) != {"broker", "redis"}:
            print(f"note: no local PID for {sorted({'broker', 'redis'} - set(infra_pids))}: CPU not counted")
        run.processes["rtml"] = {
            "gateway": stack.gateway.process.pid,
            **{child.name: child.process.pid for child in stack.workers},
            **infra_pids,
        }
        ports = tuple(p for p in map(loopback_port, (services.bootstrap, services.redis_url)) if p)
        probe = machine.CpuProbe(run.processes["rtml"], ports)
        try:
            # The same settle as after the load: the first seconds after start-up are the
            # broker's and workers' one-off start work (JIT, group joins, warm-up calls), not idling.
            warm_up(run, stack, infra_pids.get("broker"))
            settled_s = settle_jit(run, infra_pids.get("broker"))
            measure_idle(run, probe, "before_load", settle_s=max(0.0, run.config.settle_s - settled_s))
            run_http(run, stack, probe)
            run_kafka(run, stack, services.bootstrap, probe)
            measure_idle(run, probe, "after_all_load", settle_s=run.config.settle_s)
            # The target's figure: after the load and the settle (an idle worker has given its
            # freed heap back, runtime/memory.py); the peak right after the load is kept beside it.
            run.memory["rtml_after_all_load"] = _memory(stack)
        finally:
            stack.stop()
    finally:
        run.cpu.finish(local_infra_pids(run.settings))
        services.down(run.settings)


def warm_up(run: Run, stack: RtmlStack, broker_pid: int | None) -> None:
    """Cache misses at c16 in chunks of WARM_CHUNK_S until the broker's JIT compiler is done.

    Why: the broker is started for the bench, and a fresh JVM compiles for its first minute of
    traffic: on a slow moment of these machines its C2 thread took 35-45% of a core for ~30 s
    (2026-12-07, RESULTS.md), which the idle-before-load and c1 figures then counted as rtml's. A
    broker in service is warm. Bounded by WARM_MAX_S; without a local broker PID one chunk."""
    started = time.monotonic()
    env = {"BENCH_N_FEATURES": str(run.config.http.n_features)}
    chunks: list[float | None] = []
    while time.monotonic() - started < WARM_MAX_S:
        before = machine.jit_cpu_s(broker_pid) if broker_pid is not None else None
        began = time.monotonic()
        wrk.run_wrk(stack.base_url, "miss", 16, WARM_CHUNK_S, env=env)
        after = machine.jit_cpu_s(broker_pid) if broker_pid is not None else None
        if before is None or after is None:
            chunks.append(None)
            break
        share = (after - before) / (time.monotonic() - began)
        chunks.append(round(share, 3))
        if share < WARM_JIT_SHARE:
            break
    run.warm_up = {"seconds": round(time.monotonic() - started, 1), "broker_jit_share_by_chunk": chunks}
    print(
        f"warm-up: {run.warm_up['seconds']:.0f} s of c16 misses; broker JIT share of a core by chunk {chunks}"
    )
    run.phase("warm_up", started)


def settle_jit(run: Run, broker_pid: int | None) -> float:
    """Wait, without traffic, until the broker's JIT compiler is quiet; returns seconds waited.

    Why: after the warm-up's traffic stops, the freshly started broker's C2 thread keeps compiling
    for up to a minute (0.5-1.4% of a core 20-60 s later, RESULTS.md 2026-12-07 20:57Z), which an
    idle window right after would count as the idle stack's. Bounded by QUIET_MAX_S."""
    if broker_pid is None or run.config.idle_s <= 0:
        return 0.0
    started = time.monotonic()
    chunks: list[float] = []
    while time.monotonic() - started < QUIET_MAX_S:
        before, began = machine.jit_cpu_s(broker_pid), time.monotonic()
        time.sleep(QUIET_CHUNK_S)
        after = machine.jit_cpu_s(broker_pid)
        if before is None or after is None:
            break
        chunks.append(round((after - before) / (time.monotonic() - began), 4))
        if chunks[-1] < QUIET_JIT_SHARE:
            break
    waited = time.monotonic() - started
    run.jit_settle = {"seconds": round(waited, 1), "broker_jit_share_by_chunk": chunks}
    print(f"JIT settle: {waited:.0f} s without traffic; broker JIT share of a core by chunk {chunks}")
    run.phase("jit_settle", started)
    return waited


def local_infra_pids(settings: Settings) -> list[int]:
    """PIDs of this machine's Kafka broker and Redis, also when reached through
    KAFKA_BOOTSTRAP_SERVERS / REDIS_URL (see :func:`bench.services.infra_processes`)."""
    return list(infra_processes(settings).values())


def measure_idle(run: Run, probe: machine.CpuProbe, moment: str, settle_s: float) -> None:
    """``settle_s`` of nothing, then ``run.config.idle_s`` without traffic: CPU as % of one core."""
    if run.config.idle_s <= 0:
        return
    started = time.monotonic()
    time.sleep(settle_s)
    idle = {**probe.measure_idle(run.config.idle_s), "settle_s": settle_s}
    run.idle[moment] = idle
    by_process = ", ".join(f"{name} {pct:.1f}%" for name, pct in idle["pct_of_core_by_process"].items())
    print(
        f"idle {moment}: {idle['pct_of_core']:.1f}% of one core over {idle['wall_s']:.0f} s "
        f"({by_process}; others' CPU {idle['other_cpu_share']:.0%})",
        flush=True,
    )
    if idle["foreign_infra_clients"]:
        print(f"  other clients of the broker/Redis meanwhile: {idle['foreign_infra_clients']}", flush=True)
    run.phase(f"idle_{moment}", started)


def _observer(stack: RtmlStack) -> Callable[[], Snapshot]:
    return lambda: Snapshot.take(stack.gateway_metrics_url, stack.worker_metrics_urls)


def _memory(stack: RtmlStack) -> dict[str, dict[str, float | None]]:
    children: list[Child] = [stack.gateway, *stack.workers]
    return {child.name: memory_mb(child.process.pid) for child in children}


def run_http(run: Run, stack: RtmlStack, probe: machine.CpuProbe) -> None:
    started = time.monotonic()
    plan, observe, wanted = run.config.http, _observer(stack), run.config.scenarios
    print(
        f"rtml gateway at {stack.base_url} ({run.config.gateways} processes), {len(stack.workers)} workers, "
        f"{run.settings.kafka.request_partitions} partitions a request topic, namespace {stack.namespace.tag}"
    )
    for scenario, concurrencies, key in (
        ("a_miss", run.config.concurrency, "a"),
        ("b_hit", run.config.concurrency, "b"),
        ("c_batch", run.config.batch_concurrency, "c"),
    ):
        if key in wanted:
            for concurrency in concurrencies:
                case = run_case(stack.base_url, "rtml", scenario, concurrency, plan, observe, probe)
                run.cases.append(case)
            if scenario == "a_miss":
                run_open_loop(run, "rtml", "a_miss", stack.base_url, _observer(stack), probe)
    run.memory["rtml_after_http"] = _memory(stack)
    run.phase("http", started)


def run_open_loop(
    run: Run,
    system: str,
    scenario: str,
    base_url: str,
    observe: Callable[[], Snapshot] | None,
    probe: machine.CpuProbe,
) -> None:
    """Open loop at ``open_loop_share`` of ``system``'s c64 req/s in ``scenario`` (the highest
    concurrency's without c64): rtml's (a) misses, and the baseline's predict as the reference."""
    misses = [c for c in run.cases if c.system == system and c.scenario == scenario and c.runs]
    if run.config.open_loop_share <= 0 or not misses:
        return
    base = next(
        (c for c in misses if c.concurrency == OPEN_LOOP_BASE), max(misses, key=lambda c: c.concurrency)
    )
    based_on = {"scenario": base.scenario, "concurrency": base.concurrency, "rps": base.median("rps")}
    meta = run.registry.metadata(HTTP_MODEL, run.registry.latest(HTTP_MODEL))
    http = run.config.http
    plan = open_loop.OpenLoopPlan(http.duration_s, http.warmup_s, http.repeat)
    case = open_loop.run_open_loop(
        system, base_url, meta, based_on, run.config.open_loop_share, plan, observe, probe
    )
    run.open_loop.append(case.summary())


def run_kafka(run: Run, stack: RtmlStack, bootstrap: str, probe: machine.CpuProbe) -> None:
    started = time.monotonic()
    if "d" in run.config.scenarios:
        for model in DIRECT_MODELS:
            meta = run.registry.metadata(model, run.registry.latest(model))
            target = kafka_direct.DirectTarget(
                bootstrap,
                stack.namespace.request_topic(model),
                stack.namespace.predictions_topic,
                _observer(stack),
                probe,
            )
            for rows in run.config.direct_rows:
                results = kafka_direct.run_direct(
                    target,
                    meta,
                    rows,
                    run.config.direct_target_s,
                    run.config.direct_max_predictions,
                    run.config.http.repeat,
                )
                for result in results:
                    _print_direct(result)
                median = kafka_direct.median_run(results)
                run.direct.append({**median.to_dict(), "runs": [r.to_dict() for r in results]})
    run.memory["rtml_end_of_load"] = _memory(stack)
    run.phase("kafka_direct", started)


def _print_direct(result: kafka_direct.DirectResult) -> None:
    seen, expected = result.predictions_seen, result.predictions_expected
    print(
        f"  (d) {result.model} {result.rows_per_message} rows/msg: {seen:,}/{expected:,} in "
        f"{result.span_s:.2f} s = {result.predictions_per_s:,.0f} predictions/s "
        f"(mean batch {result.mean_batch_rows or 0:.1f} rows, CPU {result.cpu_ms_per_prediction or 0:.3f} "
        f"ms/prediction{_foreign(result.cpu)}, others' CPU {result.other_cpu_share:.0%})",
        flush=True,
    )


def _foreign(cpu: dict[str, Any] | None) -> str:
    count = len((cpu or {}).get("foreign_infra_clients") or {})
    return f" [{count} other broker/Redis clients]" if count else ""


def _stop_on_sigterm() -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handle)


def _quiet_check(config: Config, settings: Settings) -> dict[str, Any] | str:
    if config.wait_quiet_s <= 0:
        return "not requested"
    own = infra_processes(settings).get("broker")
    return machine.wait_until_quiet(config.wait_quiet_s, exclude={own} if own else None)


def summarize(
    run: Run, args: argparse.Namespace, facts: dict[str, Any], quiet: Any, began: float
) -> dict[str, Any]:
    cases = [case.summary() for case in run.cases]
    http = report.http_table(cases)
    return {
        "started_at": facts["date"],
        "command": " ".join([".venv/bin/python -m bench.run", *sys.argv[1:]]),
        "machine": facts,
        "wrk": wrk_version(),
        "open_loop_generator": open_loop.generator_version() if run.open_loop else None,
        "quiet_check": quiet,
        "other_kafka_brokers_at_end": machine.kafka_brokers(exclude=set(local_infra_pids(run.settings))),
        "loadavg_at_end": list(os.getloadavg()),
        "speed_probe_us_at_end": round(machine.speed_probe_us(), 1),
        "cpu": run.cpu.finish([]),
        "settings": dict(vars(args)),
        "duration_s": time.monotonic() - began,
        "phases_s": run.phases,
        "http": http,
        "http_runs": cases,
        "open_loop": run.open_loop,
        "warm_up": run.warm_up,
        "jit_settle": run.jit_settle,
        "direct": report.direct_table(run.direct, cases, run.config.http.batch_rows),
        "memory": run.memory,
        "idle": run.idle,
        "cpu_processes": run.processes,
        "targets": report.evaluate_targets(cases, run.direct, run.memory, run.idle, run.open_loop),
        "logs": str(run.log_dir),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from(args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _stop_on_sigterm()
    ensure_wrk()
    if "a" in config.scenarios and config.open_loop_share > 0:
        open_loop.ensure_generator()
    settings = load_settings()
    quiet = _quiet_check(config, settings)
    began = time.monotonic()  # the bench's own duration excludes waiting for a quiet machine
    facts = machine.facts()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    registry = ensure_models(settings, sorted(set(DIRECT_MODELS) | {HTTP_MODEL}))
    n_features = registry.metadata(HTTP_MODEL, registry.latest(HTTP_MODEL)).n_features
    config = replace(config, http=replace(config.http, n_features=n_features))
    cpu = machine.CpuAccount()
    cpu.note_infra_start(local_infra_pids(settings))
    run = Run(config, settings, registry, OUT_DIR / f"logs-{stamp}", [], [], {}, {}, cpu)
    if "e" in config.scenarios:
        run_baseline(run)
    if "m" in config.scenarios:
        peer_mlserver.run_peer(run)
    if config.scenarios & {"a", "b", "c", "d"}:
        run_rtml(run)
    summary = summarize(run, args, facts, quiet, began)
    print("\n" + report.render(summary, markdown=False))
    json_path, md_path = report.write_outputs(summary, OUT_DIR, stamp)
    print(f"\nwrote {json_path.relative_to(REPO_ROOT)} and {md_path.relative_to(REPO_ROOT)}")
    cpu = summary["cpu"]
    print(
        f"whole bench: {summary['duration_s']:.0f} s; other processes used {cpu['other_cpu_s']:.0f} CPU-s "
        f"({cpu['other_share_of_machine']:.0%} of the machine) meanwhile"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
