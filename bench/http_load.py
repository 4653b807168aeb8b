"""Scenarios (a), (b), (c) and the baseline (e): wrk against an HTTP endpoint, repeated, with metrics."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.machine import CpuProbe, CpuUsage
from bench.observe import Snapshot, gateway_cache_hit_ratio, gateway_trouble, mean_batch_rows
from bench.wrk import WrkResult, run_wrk

SCENARIO_SCRIPT = {
    "a_miss": "miss",
    "b_hit": "hit",
    "c_batch": "batch",
    "e_predict": "miss",
    "e_batch": "batch",
    "m_predict": "oip",
}


@dataclass(frozen=True)
class HttpPlan:
    duration_s: float
    warmup_s: float
    repeat: int
    wrk_threads: int
    model: str
    n_features: int
    batch_rows: int

    def wrk_env(self) -> dict[str, str]:
        return {
            "BENCH_MODEL": self.model,
            "BENCH_N_FEATURES": str(self.n_features),
            "BENCH_ROWS": str(self.batch_rows),
        }


@dataclass
class HttpCase:
    """One (system, scenario, concurrency) measured ``repeat`` times."""

    system: str
    scenario: str
    concurrency: int
    runs: list[WrkResult] = field(default_factory=list)
    batch_rows: list[float | None] = field(default_factory=list)
    cache_hit_ratio: list[float | None] = field(default_factory=list)
    gateway_trouble: list[dict[str, int]] = field(default_factory=list)
    other_cpu_share: list[float | None] = field(default_factory=list)
    cpu: list[CpuUsage] = field(default_factory=list)
    """CPU of the processes under test during each measured run (not the warm-up)."""

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(run, attr) for run in self.runs))

    def median_of(self, values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return float(statistics.median(present)) if present else None

    def cpu_per_request(self) -> dict[str, Any] | None:
        """CPU per answered (2xx) request over every measured run: summed CPU / summed answers."""
        if not self.cpu:
            return None
        total = self.cpu[0]
        for usage in self.cpu[1:]:
            total = total + usage
        return total.per_unit(sum(run.answered for run in self.runs), "request")

    def summary(self) -> dict[str, Any]:
        cpu = self.cpu_per_request()
        return {
            "system": self.system,
            "scenario": self.scenario,
            "concurrency": self.concurrency,
            "rps": self.median("rps"),
            "p50_ms": self.median("p50_ms"),
            "p99_ms": self.median("p99_ms"),
            "p999_ms": self.median("p999_ms"),
            "errors": int(self.median("errors")),
            "errors_total": sum(run.errors for run in self.runs),
            "mean_batch_rows": self.median_of(self.batch_rows),
            "cache_hit_ratio": self.median_of(self.cache_hit_ratio),
            "gateway_trouble": self.gateway_trouble,
            "other_cpu_share": self.median_of(self.other_cpu_share),
            "answered": sum(run.answered for run in self.runs),
            "cpu_ms_per_req": None if cpu is None else cpu["ms_per_unit"],
            "cpu": cpu,
            "runs": [run.to_dict() for run in self.runs],
        }


def run_case(
    base_url: str,
    system: str,
    scenario: str,
    concurrency: int,
    plan: HttpPlan,
    observe: Callable[[], Snapshot] | None = None,
    probe: CpuProbe | None = None,
) -> HttpCase:
    """Warm up once, then ``plan.repeat`` measured wrk runs with a metrics snapshot around each."""
    script = SCENARIO_SCRIPT[scenario]
    env = plan.wrk_env()
    if plan.warmup_s > 0:
        run_wrk(base_url, script, concurrency, plan.warmup_s, threads=plan.wrk_threads, env=env)
    case = HttpCase(system, scenario, concurrency)
    for _ in range(plan.repeat):
        before = observe() if observe else None
        cpu_before = probe.read() if probe else None
        case.runs.append(
            run_wrk(base_url, script, concurrency, plan.duration_s, threads=plan.wrk_threads, env=env)
        )
        cpu_after = probe.read() if probe else None
        after = observe() if observe else None
        if cpu_before is not None and cpu_after is not None:
            case.other_cpu_share.append(CpuProbe.other_share(cpu_before, cpu_after))
            case.cpu.append(CpuProbe.usage(cpu_before, cpu_after))
        if before is not None and after is not None:
            case.batch_rows.append(mean_batch_rows(before, after, plan.model))
            case.cache_hit_ratio.append(gateway_cache_hit_ratio(before, after, plan.model))
            case.gateway_trouble.append(gateway_trouble(before, after))
        print(f"  {_line(case)}", flush=True)
    return case


def _line(case: HttpCase) -> str:
    run = case.runs[-1]
    batch = case.batch_rows[-1] if case.batch_rows else None
    hits = case.cache_hit_ratio[-1] if case.cache_hit_ratio else None
    extra = f" batch {batch:.1f}" if batch is not None else ""
    extra += f" hits {hits:.0%}" if hits is not None else ""
    if case.cpu and run.answered:
        extra += f" CPU {1000 * case.cpu[-1].total_s / run.answered:.2f} ms/req"
        foreign = len(case.cpu[-1].foreign_clients)
        extra += f" ({foreign} other broker/Redis clients)" if foreign else ""
    others = case.other_cpu_share[-1] if case.other_cpu_share else None
    extra += f" others' CPU {others:.0%}" if others is not None else ""
    extra += (
        f" gateway {case.gateway_trouble[-1]}" if case.gateway_trouble and case.gateway_trouble[-1] else ""
    )
    return (
        f"{case.system:8} {case.scenario:8} c={case.concurrency:<3} {run.rps:9.0f} req/s "
        f"p50 {run.p50_ms:7.2f} p99 {run.p99_ms:7.2f} p99.9 {run.p999_ms:7.2f} ms "
        f"errors {run.errors}{extra}"
    )
