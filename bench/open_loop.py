"""Open-loop load: vegeta at a constant request rate, every request a cache miss.

wrk is closed-loop: each connection sends its next request only when the last one is answered,
so a slow server is offered less load and its queueing never shows in the latencies
(coordinated omission). vegeta sends on a schedule (request n at n / rate seconds, more
connections as needed), so latency here is what a client arriving at that rate sees.

Every request body is a distinct iris feature vector drawn around the model's training
baseline (6 decimals), in a JSON targets file of at least rate x duration bodies: vegeta
loops its targets round-robin, and a repeated body would be a cache hit. vegeta's results are
decoded to CSV and summarized here (percentiles over every request, errors, achieved rate and
how late vegeta sent against its schedule).

vegeta is ``go install``-ed into ``.cache/go-bin`` when it is not on PATH (like wrk, see
:func:`bench.wrk.ensure_wrk`).
"""

from __future__ import annotations

import base64
import csv
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

import numpy as np
import orjson

from bench.kafka_direct import feature_stats
from bench.machine import CpuProbe, CpuUsage
from bench.observe import Snapshot, gateway_cache_hit_ratio, gateway_trouble, mean_batch_rows
from bench.paths import REPO_ROOT
from schemas.model_metadata import ModelMetadata

VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.13.0"
GO_BIN_DIR = REPO_ROOT / ".cache" / "go-bin"
TIMEOUT = "10s"
MAX_BODIES = 2_000_000
"""Bound on the unique bodies written per run (rate x duration above it repeats bodies)."""


class VegetaError(RuntimeError):
    """vegeta is missing, could not be installed, or failed."""


MAX_CONNECTIONS = 256
"""vegeta's connections to the gateway (4x the closed-loop c64). Unbounded, an overloaded run
spirals: each late answer makes vegeta dial another connection, which cost it 0.28 ms of CPU per
request (1.2 cores at 4.4k req/s) on the 2 cores the stack needs. Capped, a request that finds
every connection busy waits in vegeta and shows up as send lag instead."""


def ensure_vegeta() -> str:
    """Path of vegeta: on PATH, in .cache/go-bin, or ``go install``-ed there now (needs Go)."""
    found = shutil.which("vegeta") or shutil.which("vegeta", path=str(GO_BIN_DIR))
    if found:
        return found
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        raise VegetaError(
            "vegeta is not installed and Go is not available to build it: install Go, or put a "
            f"vegeta binary on PATH (https://github.com/tsenart/vegeta), or `GOBIN={GO_BIN_DIR} "
            f"go install {VEGETA_MODULE}@{VEGETA_VERSION}`"
        )
    GO_BIN_DIR.mkdir(parents=True, exist_ok=True)
    print(f"vegeta not found; go install {VEGETA_MODULE}@{VEGETA_VERSION} into {GO_BIN_DIR} ...", flush=True)
    done = subprocess.run(
        [go, "install", f"{VEGETA_MODULE}@{VEGETA_VERSION}"],
        env={**os.environ, "GOBIN": str(GO_BIN_DIR)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    found = shutil.which("vegeta", path=str(GO_BIN_DIR))
    if done.returncode != 0 or found is None:
        raise VegetaError(f"go install {VEGETA_MODULE} failed ({done.returncode}):\n{done.stderr[-1500:]}")
    return found


def vegeta_version(vegeta: str) -> str:
    """The module version vegeta was built from (``go version -m``), else what ``-version`` says."""
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is not None:
        done = subprocess.run([go, "version", "-m", vegeta], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            parts = line.split()
            if parts[:2] == ["mod", VEGETA_MODULE] and len(parts) > 2:
                return f"vegeta {parts[2]}"
    done = subprocess.run([vegeta, "-version"], capture_output=True, text=True, check=False)
    version = next(
        (x.split(":", 1)[1].strip() for x in done.stdout.splitlines() if x.startswith("Version")), ""
    )
    return f"vegeta {version or '(version unknown)'}"


def write_targets(
    path: Path, url: str, meta: ModelMetadata, count: int, seed: int, model: str | None = None
) -> int:
    """``count`` vegeta JSON targets (one per line), each POSTing a distinct feature vector."""
    rng = np.random.default_rng(seed)
    mean, std = feature_stats(meta)
    header = {"Content-Type": ["application/json"]}
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
                target = {
                    "method": "POST",
                    "url": url,
                    "body": base64.b64encode(body).decode(),
                    "header": header,
                }
                sink.write(orjson.dumps(target) + b"\n")
                written += 1
    return written


@dataclass(frozen=True)
class OpenLoopResult:
    """One vegeta run. Latencies in ms over every request sent (errors included)."""

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
    send_lag_p99_ms: float
    """How late vegeta sent against its schedule (request n at n / rate); high = load generator lag."""
    send_lag_max_ms: float
    unique_bodies: int
    generator_cpu_s: float = 0.0
    """vegeta's own CPU (user + system) during the attack: it shares the cores with the stack."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_results(csv_path: Path, rate: float, duration_s: float, unique_bodies: int) -> OpenLoopResult:
    """Summarize ``vegeta encode -to csv`` output (timestamp ns, code, latency ns, ..., error, ..., seq)."""
    stamps, latencies, seqs, ok = [], [], [], 0
    kinds: dict[str, int] = {}
    with csv_path.open(newline="") as source:
        for row in csv.reader(source):
            stamps.append(int(row[0]))
            latencies.append(int(row[2]))
            seqs.append(int(row[8]))
            code, error = int(row[1]), row[5]
            if 200 <= code < 300 and not error:
                ok += 1
            else:
                kind = f"HTTP {code}" if code else (error.rsplit(": ", 1)[-1][:80] or "no response")
                kinds[kind] = kinds.get(kind, 0) + 1
    if not stamps:
        raise VegetaError(f"vegeta recorded no requests ({csv_path})")
    latency_ms = np.array(latencies, dtype=np.float64) / 1e6
    sent = np.array(stamps, dtype=np.int64)
    first = int(sent.min())
    lag_ms = (sent - first) / 1e6 - np.array(seqs, dtype=np.float64) * 1000 / rate
    lag_ms -= min(0.0, float(lag_ms.min()))
    send_span = (int(sent.max()) - first) / 1e9
    answer_span = (float((sent + np.array(latencies, dtype=np.int64)).max()) - first) / 1e9
    p50, p90, p99, p999 = np.percentile(latency_ms, [50, 90, 99, 99.9])
    return OpenLoopResult(
        rate=rate,
        duration_s=duration_s,
        requests=len(stamps),
        ok=ok,
        errors=len(stamps) - ok,
        error_kinds=kinds,
        sent_rate=(len(stamps) - 1) / send_span if send_span > 0 else 0.0,
        throughput=ok / answer_span if answer_span > 0 else 0.0,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        p999_ms=float(p999),
        max_ms=float(latency_ms.max()),
        send_lag_p99_ms=float(np.percentile(lag_ms, 99)),
        send_lag_max_ms=float(lag_ms.max()),
        unique_bodies=unique_bodies,
    )


def run_vegeta(
    vegeta: str, base_url: str, meta: ModelMetadata, rate: int, duration_s: float, seed: int
) -> OpenLoopResult:
    """One constant-rate attack on /api/v1/predict with unique bodies; vegeta's files in a temp dir."""
    requests = math.ceil(rate * duration_s)
    bodies = min(MAX_BODIES, requests + max(64, requests // 50))
    with tempfile.TemporaryDirectory(prefix="bench-vegeta-") as tmp:
        targets, results, decoded = (
            Path(tmp) / "targets.jsonl",
            Path(tmp) / "results.bin",
            Path(tmp) / "r.csv",
        )
        unique = write_targets(targets, f"{base_url}/api/v1/predict", meta, bodies, seed)
        attack = [
            vegeta, "attack", "-format=json", f"-targets={targets}", f"-rate={rate}/1s",
            f"-duration={duration_s:.3f}s", f"-timeout={TIMEOUT}", "-max-body=0", "-keepalive=true",
            f"-max-connections={MAX_CONNECTIONS}",
            f"-output={results}",
        ]  # fmt: skip
        # One OS thread for vegeta's Go runtime, like wrk's single thread: it shares the 2 cores.
        env = {**os.environ, "GOMAXPROCS": os.environ.get("BENCH_VEGETA_GOMAXPROCS", "1")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            attack, capture_output=True, text=True, env=env, timeout=duration_s + 60, check=False
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise VegetaError(f"{' '.join(attack)} exited {done.returncode}: {done.stderr[-1500:]}")
        generator_cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        encode = [vegeta, "encode", "-to=csv", f"-output={decoded}", str(results)]
        done = subprocess.run(encode, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise VegetaError(f"{' '.join(encode)} exited {done.returncode}: {done.stderr[-1500:]}")
        return replace(parse_results(decoded, rate, duration_s, unique), generator_cpu_s=generator_cpu_s)


@dataclass
class OpenLoopCase:
    """Open-loop runs at ``share`` of a closed-loop case's req/s."""

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
    base_url: str,
    meta: ModelMetadata,
    based_on: dict[str, Any],
    share: float,
    plan: OpenLoopPlan,
    observe: Callable[[], Snapshot] | None = None,
    probe: CpuProbe | None = None,
) -> OpenLoopCase:
    """vegeta at ``share`` x ``based_on["rps"]`` req/s: a warm-up, then ``plan.repeat`` measured runs."""
    vegeta = ensure_vegeta()
    rate = max(1, round(share * float(based_on["rps"])))  # vegeta takes whole requests per second
    case = OpenLoopCase("a_open_loop", based_on, share, rate)
    seeds = np.random.SeedSequence().generate_state(plan.repeat + 1)
    if plan.warmup_s > 0:
        run_vegeta(vegeta, base_url, meta, rate, plan.warmup_s, int(seeds[-1]))
    for index in range(plan.repeat):
        before = observe() if observe else None
        cpu_before = probe.read() if probe else None
        result = run_vegeta(vegeta, base_url, meta, rate, plan.duration_s, int(seeds[index]))
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
    if case.other_cpu_share:
        extra += f" others' CPU {case.other_cpu_share[-1]:.0%}"
    if run.error_kinds:
        extra += f" {run.error_kinds}"
    return (
        f"open-loop {case.share:.0%} of c{case.based_on['concurrency']}: {case.rate:,} req/s asked, "
        f"{run.sent_rate:,.0f} sent, {run.throughput:,.0f} answered/s; p50 {run.p50_ms:.2f} "
        f"p99 {run.p99_ms:.2f} p99.9 {run.p999_ms:.2f} ms; errors {run.errors}; "
        f"send lag p99 {run.send_lag_p99_ms:.2f} ms; vegeta CPU {run.generator_cpu_s / run.duration_s:.0%} "
        f"of a core{extra}"
    )
