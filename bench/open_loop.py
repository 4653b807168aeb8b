"""Open-loop load: requests at a constant rate, every request a cache miss.

wrk is closed-loop: each connection sends its next request only when the last one is answered,
so a slow server is offered less load and its queueing never shows in the latencies
(coordinated omission). Here request n is due at n / rate seconds whatever the server does, on a
fixed pool of keep-alive connections; a request due while every connection is busy waits for
one, and its latency counts from when it was due (like wrk2), so what a client arriving at
that rate would see is what is reported.

The generator is ``bench/openloop/main.go`` (Go standard library only), built into
``.cache/go-bin`` on first use. It replaced vegeta: on these 2 cores the load generator shares
the CPU with what it measures, and vegeta spent 0.13-0.21 ms of CPU per request against the
baseline (this one 0.07-0.12 at the same rates, 2026-12-07 runs in bench/RESULTS.md), and
measured latency from its own late send, leaving the wait for a free connection out.

Every request body is a distinct iris feature vector drawn around the model's training
baseline (6 decimals), one body per line in a file of at least rate x duration bodies: the
generator sends them in order, and a repeated body would be a cache hit. Its per-request CSV
is summarized here (percentiles over every request, errors, achieved rate, how late requests
were sent against their schedule).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from bench.kafka_direct import feature_stats
from bench.machine import CpuProbe, CpuUsage
from bench.observe import (
    Snapshot,
    gateway_cache_hit_ratio,
    gateway_latency,
    gateway_trouble,
    mean_batch_rows,
)
from bench.paths import REPO_ROOT
from schemas.model_metadata import ModelMetadata

GENERATOR_SOURCE = REPO_ROOT / "bench" / "openloop"
GO_BIN_DIR = REPO_ROOT / ".cache" / "go-bin"
TIMEOUT = "10s"
MAX_BODIES = 2_000_000
"""Bound on the unique bodies written per run (rate x duration above it repeats bodies)."""


class LoadGeneratorError(RuntimeError):
    """The open-loop generator could not be built, or failed."""


CONNECTIONS = 256
"""Keep-alive connections, all dialled before the run (4x the closed-loop c64). A fixed pool:
dialling more when all are busy (vegeta's way) made an overloaded run spiral, each late answer
costing the generator a new connection's CPU on the 2 cores the stack needs."""


def _go() -> str | None:
    return shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")


def generator_version() -> str:
    """The generator's name and source digest (its binary is named after it)."""
    return f"rtml-openloop {_source_digest()}"


def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(GENERATOR_SOURCE.glob("*")):
        if path.suffix in {".go", ".mod"}:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_generator() -> str:
    """Path of the generator binary for the current source, ``go build``-ing it when missing."""
    binary = GO_BIN_DIR / f"rtml-openloop-{_source_digest()}"
    if binary.is_file():
        return str(binary)
    go = _go()
    if go is None:
        raise LoadGeneratorError(
            f"the open-loop generator ({GENERATOR_SOURCE.relative_to(REPO_ROOT)}) needs Go to build: "
            "install Go (https://go.dev/dl/) or run the bench with --open-loop-share 0"
        )
    GO_BIN_DIR.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(binary.name + ".partial")
    done = subprocess.run(
        [go, "build", "-trimpath", "-o", str(partial), "."],
        cwd=GENERATOR_SOURCE,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise LoadGeneratorError(
            f"go build of {GENERATOR_SOURCE} failed ({done.returncode}):\n{done.stderr[-1500:]}"
        )
    partial.replace(binary)  # atomic: a concurrent bench never runs a half-written binary
    return str(binary)


def write_bodies(path: Path, meta: ModelMetadata, count: int, seed: int, model: str | None = None) -> int:
    """``count`` request bodies (one JSON document a line), each a distinct feature vector."""
    rng = np.random.default_rng(seed)
    mean, std = feature_stats(meta)
    name, written, seen = model or meta.name, 0, set()
    with path.open("wb") as sink:
        while written < count:
            block = np.round(rng.normal(mean, std, size=(min(65536, count - written), meta.n_features)), 6)
            for row in block:
                fingerprint = row.tobytes()
                if fingerprint in seen:
                    continue
                seen.add(fingerprint)
                body = orjson.dumps(
                    {"model_name": name, "use_cache": True, "features": row},
                    option=orjson.OPT_SERIALIZE_NUMPY,
                )
                sink.write(body + b"\n")
                written += 1
    return written


@dataclass(frozen=True)
class OpenLoopResult:
    """One open-loop run. Latencies in ms from each request's scheduled time, over every request
    sent (errors included)."""

    rate: float
    """Requested rate, req/s."""
    duration_s: float
    requests: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    sent_rate: float
    """Requests over first -> last send."""
    throughput: float
    """2xx answers over first send -> last answer."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    p99_from_send_ms: float
    """p99 from when each request was written (what vegeta and wrk report), not from when it was due."""
    send_lag_p99_ms: float
    """How late requests were written against their schedule (request n at n / rate): waiting for
    a free connection, or the generator falling behind."""
    send_lag_max_ms: float
    unique_bodies: int
    generator_cpu_s: float = 0.0
    """The generator's own CPU (user + system) during the run: it shares the cores with the stack."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_results(csv_path: Path, rate: float, duration_s: float, unique_bodies: int) -> OpenLoopResult:
    """Summarize the generator's CSV: seq, scheduled_ns, sent_ns, done_ns, status, error text
    (times from the run's start; sent and done 0 for a request never sent)."""
    scheduled, sent, done, ok = [], [], [], 0
    kinds: dict[str, int] = {}
    with csv_path.open(newline="") as source:
        for row in csv.reader(source):
            scheduled.append(int(row[1]))
            sent.append(int(row[2]))
            done.append(int(row[3]))
            status, error = int(row[4]), row[5]
            if 200 <= status < 300 and not error:
                ok += 1
            else:
                kind = f"HTTP {status}" if status else (error.rsplit(": ", 1)[-1][:80] or "no response")
                kinds[kind] = kinds.get(kind, 0) + 1
    if not scheduled:
        raise LoadGeneratorError(f"the generator recorded no requests ({csv_path})")
    due, sent_ns, done_ns = (np.array(x, dtype=np.int64) for x in (scheduled, sent, done))
    tried = done_ns > 0  # a request never sent (its connection could not be dialled) has no latency
    if not tried.any():
        raise LoadGeneratorError(f"no request was sent ({csv_path}): {kinds}")
    latency_ms = (done_ns[tried] - due[tried]) / 1e6
    from_send_ms = (done_ns[tried] - sent_ns[tried]) / 1e6
    lag_ms = (sent_ns[tried] - due[tried]) / 1e6
    first_sent = int(sent_ns[tried].min())
    send_span = (int(sent_ns[tried].max()) - first_sent) / 1e9
    answer_span = (int(done_ns.max()) - first_sent) / 1e9
    p50, p90, p99, p999 = np.percentile(latency_ms, [50, 90, 99, 99.9])
    return OpenLoopResult(
        rate=rate,
        duration_s=duration_s,
        requests=len(scheduled),
        ok=ok,
        errors=len(scheduled) - ok,
        error_kinds=kinds,
        sent_rate=(int(tried.sum()) - 1) / send_span if send_span > 0 else 0.0,
        throughput=ok / answer_span if answer_span > 0 else 0.0,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        p999_ms=float(p999),
        max_ms=float(latency_ms.max()),
        p99_from_send_ms=float(np.percentile(from_send_ms, 99)),
        send_lag_p99_ms=float(np.percentile(lag_ms, 99)),
        send_lag_max_ms=float(lag_ms.max()),
        unique_bodies=unique_bodies,
    )


def run_generator(
    generator: str,
    base_url: str,
    meta: ModelMetadata,
    rate: int,
    duration_s: float,
    seed: int,
    connections: int = CONNECTIONS,
) -> OpenLoopResult:
    """One constant-rate run on /api/v1/predict with unique bodies; the generator's files in a temp dir."""
    requests = math.ceil(rate * duration_s)
    bodies = min(MAX_BODIES, requests + max(64, requests // 50))
    url = urlsplit(base_url)
    with tempfile.TemporaryDirectory(prefix="bench-openloop-") as tmp:
        bodies_path, results = Path(tmp) / "bodies.jsonl", Path(tmp) / "results.csv"
        unique = write_bodies(bodies_path, meta, bodies, seed)
        command = [
            generator, f"-addr={url.hostname}:{url.port}", f"-path={url.path.rstrip('/')}/api/v1/predict",
            f"-bodies={bodies_path}", f"-rate={rate}", f"-duration={duration_s:.3f}s",
            f"-connections={connections}", f"-timeout={TIMEOUT}", f"-output={results}",
        ]  # fmt: skip
        # One OS thread for the Go runtime, like wrk's single thread: it shares the 2 cores.
        env = {**os.environ, "GOMAXPROCS": os.environ.get("BENCH_OPENLOOP_GOMAXPROCS", "1")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=duration_s + 60, check=False
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise LoadGeneratorError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-1500:]}")
        generator_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return replace(parse_results(results, rate, duration_s, unique), generator_cpu_s=generator_cpu_s)


@dataclass
class OpenLoopCase:
    """Open-loop runs at ``share`` of a closed-loop case's req/s."""

    system: str
    """"rtml" or "baseline": the baseline runs the same at its own share, as the reference."""
    scenario: str
    based_on: dict[str, Any]
    share: float
    rate: int
    runs: list[OpenLoopResult] = field(default_factory=list)
    cpu: list[CpuUsage] = field(default_factory=list)
    other_cpu_share: list[float] = field(default_factory=list)
    cache_hit_ratio: list[float | None] = field(default_factory=list)
    batch_rows: list[float | None] = field(default_factory=list)
    gateway_trouble: list[dict[str, int]] = field(default_factory=list)
    gateway_latency: list[dict[str, float] | None] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def median(attr: str) -> float:
            return float(statistics.median(getattr(run, attr) for run in self.runs))

        def median_of(values: list[float | None]) -> float | None:
            present = [v for v in values if v is not None]
            return float(statistics.median(present)) if present else None

        cpu = None
        if self.cpu:
            total = self.cpu[0]
            for usage in self.cpu[1:]:
                total = total + usage
            cpu = total.per_unit(sum(run.ok for run in self.runs), "request")
        return {
            "system": self.system,
            "scenario": self.scenario,
            "based_on": self.based_on,
            "share": self.share,
            "rate": self.rate,
            "duration_s": self.runs[0].duration_s if self.runs else None,
            "requests": sum(run.requests for run in self.runs),
            "answered": sum(run.ok for run in self.runs),
            "errors_total": sum(run.errors for run in self.runs),
            **{
                attr: median(attr)
                for attr in ("sent_rate", "throughput", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")
            },
            "p99_from_send_ms": median("p99_from_send_ms"),
            "send_lag_p99_ms": median("send_lag_p99_ms"),
            # The load generator's share of the machine: on 2 cores it competes with the stack.
            "generator_ms_per_req": (
                1000
                * sum(run.generator_cpu_s for run in self.runs)
                / max(1, sum(run.requests for run in self.runs))
            ),
            "cache_hit_ratio": median_of(self.cache_hit_ratio),
            "mean_batch_rows": median_of(self.batch_rows),
            "gateway_trouble": self.gateway_trouble,
            "gateway_mean_ms": median_of([g["mean_ms"] if g else None for g in self.gateway_latency]),
            "gateway_p99_le_ms": median_of([g["p99_le_ms"] if g else None for g in self.gateway_latency]),
            "other_cpu_share": median_of(list(self.other_cpu_share)),
            "cpu_ms_per_req": None if cpu is None else cpu["ms_per_unit"],
            "cpu": cpu,
            "runs": [run.to_dict() for run in self.runs],
        }


@dataclass(frozen=True)
class OpenLoopPlan:
    duration_s: float
    warmup_s: float
    repeat: int


def run_open_loop(
    system: str,
    base_url: str,
    meta: ModelMetadata,
    based_on: dict[str, Any],
    share: float,
    plan: OpenLoopPlan,
    observe: Callable[[], Snapshot] | None = None,
    probe: CpuProbe | None = None,
) -> OpenLoopCase:
    """``share`` x ``based_on["rps"]`` req/s: a warm-up, then ``plan.repeat`` measured runs."""
    generator = ensure_generator()
    rate = max(1, round(share * float(based_on["rps"])))
    scenario = "e_open_loop" if system == "baseline" else "a_open_loop"
    case = OpenLoopCase(system, scenario, based_on, share, rate)
    seeds = np.random.SeedSequence().generate_state(plan.repeat + 1)
    if plan.warmup_s > 0:
        run_generator(generator, base_url, meta, rate, plan.warmup_s, int(seeds[-1]))
    for index in range(plan.repeat):
        before = observe() if observe else None
        cpu_before = probe.read() if probe else None
        result = run_generator(generator, base_url, meta, rate, plan.duration_s, int(seeds[index]))
        cpu_after = probe.read() if probe else None
        after = observe() if observe else None
        case.runs.append(result)
        if cpu_before is not None and cpu_after is not None:
            case.cpu.append(CpuProbe.usage(cpu_before, cpu_after))
            case.other_cpu_share.append(CpuProbe.other_share(cpu_before, cpu_after))
        if before is not None and after is not None:
            case.cache_hit_ratio.append(gateway_cache_hit_ratio(before, after, meta.name))
            case.batch_rows.append(mean_batch_rows(before, after, meta.name))
            case.gateway_trouble.append(gateway_trouble(before, after))
            case.gateway_latency.append(gateway_latency(before, after, meta.name))
        print(f"  {_line(case)}", flush=True)
    return case


def _line(case: OpenLoopCase) -> str:
    run = case.runs[-1]
    extra = ""
    if case.cache_hit_ratio and case.cache_hit_ratio[-1] is not None:
        extra += f" hits {case.cache_hit_ratio[-1]:.0%}"
    if case.cpu and run.ok:
        extra += f" CPU {1000 * case.cpu[-1].total_s / run.ok:.2f} ms/req"
        foreign = len(case.cpu[-1].foreign_clients)
        extra += f" ({foreign} other broker/Redis clients)" if foreign else ""
    if case.gateway_latency and (inside := case.gateway_latency[-1]) is not None:
        extra += f" gateway mean {inside['mean_ms']:.1f} ms p99<={inside['p99_le_ms']:.0f} ms"
    if case.other_cpu_share:
        extra += f" others' CPU {case.other_cpu_share[-1]:.0%}"
    if run.error_kinds:
        extra += f" {run.error_kinds}"
    return (
        f"{case.system} open-loop {case.share:.0%} of c{case.based_on['concurrency']}: "
        f"{case.rate:,} req/s asked, "
        f"{run.sent_rate:,.0f} sent, {run.throughput:,.0f} answered/s; p50 {run.p50_ms:.2f} "
        f"p99 {run.p99_ms:.2f} p99.9 {run.p999_ms:.2f} ms; errors {run.errors}; "
        f"p99 from send {run.p99_from_send_ms:.2f} ms; send lag p99 {run.send_lag_p99_ms:.2f} ms; "
        f"generator CPU {run.generator_cpu_s / run.duration_s:.0%} "
        f"of a core{extra}"
    )
