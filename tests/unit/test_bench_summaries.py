"""The bench's own arithmetic: the open-loop generator's CSV summary, the gateway's latency
histogram deltas and the machine readings (bench/open_loop.py, bench/observe.py, bench/machine.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import machine
from bench.observe import Snapshot, gateway_latency
from bench.open_loop import LoadGeneratorError, parse_results


def _csv(path: Path, rows: list[tuple[int, int, int, int, int, str]]) -> Path:
    path.write_text("".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def test_latency_counts_from_the_schedule_not_from_the_late_send(tmp_path: Path) -> None:
    ms = 1_000_000
    rows = [
        # seq, scheduled, sent, done, status, error: request 1 waited 30 ms for a connection.
        (0, 0, 1 * ms, 11 * ms, 200, ""),
        (1, 10 * ms, 40 * ms, 50 * ms, 200, ""),
        (2, 20 * ms, 50 * ms, 60 * ms, 503, ""),
        (3, 30 * ms, 0, 0, 0, "dial: connection refused"),
    ]
    result = parse_results(_csv(tmp_path / "r.csv", rows), rate=100, duration_s=0.04, unique_bodies=4)
    assert (result.requests, result.ok, result.errors) == (4, 2, 2)
    assert result.error_kinds == {"HTTP 503": 1, "connection refused": 1}
    assert result.max_ms == pytest.approx(40.0)  # 50 - 10: from when it was due
    assert result.p99_from_send_ms == pytest.approx(10.0, abs=0.01)  # every exchange took 10 ms
    assert result.send_lag_max_ms == pytest.approx(30.0)
    assert result.p50_ms == pytest.approx(40.0)  # 11, 40, 40: the never-sent one has no latency


def test_a_run_where_nothing_was_sent_is_an_error(tmp_path: Path) -> None:
    rows = [(0, 0, 0, 0, 0, "dial: connection refused")]
    with pytest.raises(LoadGeneratorError, match="no request was sent"):
        parse_results(_csv(tmp_path / "r.csv", rows), rate=1, duration_s=1, unique_bodies=1)


def _histogram(counts: dict[str, float], model: str = "m") -> list[tuple[str, dict[str, str], float]]:
    name = "rtml_gateway_request_seconds"
    samples = [(f"{name}_bucket", {"model": model, "le": le}, value) for le, value in counts.items()]
    return [*samples, (f"{name}_count", {"model": model}, counts["+Inf"])]


def test_gateway_latency_is_the_delta_between_snapshots() -> None:
    before_samples = _histogram({"0.001": 10, "0.01": 10, "0.1": 10, "+Inf": 10})
    before_samples.append(("rtml_gateway_request_seconds_sum", {"model": "m"}, 0.005))
    # 100 more requests: 50 under 1 ms, 49 more under 10 ms, 1 under 100 ms; 0.4 s in all.
    after_samples = _histogram({"0.001": 60, "0.01": 109, "0.1": 110, "+Inf": 110})
    after_samples.append(("rtml_gateway_request_seconds_sum", {"model": "m"}, 0.405))
    latency = gateway_latency(Snapshot(before_samples, []), Snapshot(after_samples, []), "m")
    assert latency is not None
    assert latency["mean_ms"] == pytest.approx(4.0)
    assert latency["p50_le_ms"] == pytest.approx(1.0)
    assert latency["p99_le_ms"] == pytest.approx(10.0)
    assert gateway_latency(Snapshot(before_samples, []), Snapshot(before_samples, []), "m") is None


def test_jit_cpu_counts_only_a_jvms_compiler_threads() -> None:
    # A Python process has no JIT compiler threads: zero, not its own CPU time.
    assert machine.jit_cpu_s(os.getpid()) == 0.0
    assert machine.jit_cpu_s(2**22 + 1) is None  # above pid_max: no such process


def test_the_speed_probe_times_its_workload() -> None:
    assert 0.1 < machine.speed_probe_us() < 10_000
