"""Client-side benchmark: send ``n_requests`` predictions with ``concurrency`` callers in flight
and summarise the client-measured latencies of the successful ones."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import numpy as np

from rtml_client.errors import RtmlClientError
from rtml_client.results import BenchmarkResult


class _Tally:
    """Latencies and errors gathered by concurrent callers (list.append is atomic in CPython;
    the lock keeps it correct elsewhere too)."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.errors: list[RtmlClientError] = []
        self._lock = threading.Lock()

    def add(self, latency_ms: float | None = None, error: RtmlClientError | None = None) -> None:
        with self._lock:
            if error is not None:
                self.errors.append(error)
            elif latency_ms is not None:
                self.latencies_ms.append(latency_ms)


def check_arguments(n_requests: int, concurrency: int) -> None:
    if n_requests < 1:
        raise ValueError(f"n_requests must be >= 1, got {n_requests}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")


def _shares(n_requests: int, concurrency: int) -> list[int]:
    callers = min(concurrency, n_requests)
    return [n_requests // callers + (1 if i < n_requests % callers else 0) for i in range(callers)]


def run_sync(call: Callable[[], float], n_requests: int, concurrency: int) -> BenchmarkResult:
    """``call`` sends one request and returns its latency in ms; threads provide the concurrency."""
    check_arguments(n_requests, concurrency)
    tally = _Tally()

    def caller(count: int) -> None:
        for _ in range(count):
            try:
                tally.add(latency_ms=call())
            except RtmlClientError as exc:
                tally.add(error=exc)

    started = time.perf_counter()
    threads = [
        threading.Thread(target=caller, args=(n,), daemon=True) for n in _shares(n_requests, concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarize(tally, time.perf_counter() - started, concurrency)


async def run_async(
    call: Callable[[], Awaitable[float]], n_requests: int, concurrency: int
) -> BenchmarkResult:
    """As :func:`run_sync`, with ``concurrency`` tasks on the running event loop."""
    check_arguments(n_requests, concurrency)
    tally = _Tally()

    async def caller(count: int) -> None:
        for _ in range(count):
            try:
                tally.add(latency_ms=await call())
            except RtmlClientError as exc:
                tally.add(error=exc)

    started = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in _shares(n_requests, concurrency)))
    return summarize(tally, time.perf_counter() - started, concurrency)


def summarize(tally: _Tally, elapsed_s: float, concurrency: int) -> BenchmarkResult:
    """Statistics of the successful requests; raises the first error if none succeeded."""
    if not tally.latencies_ms:
        raise tally.errors[0]
    latencies = np.asarray(tally.latencies_ms)
    p50, p95, p99 = (float(v) for v in np.percentile(latencies, [50, 95, 99]))
    errors: dict[str, int] = {}
    for error in tally.errors:
        errors[error.code] = errors.get(error.code, 0) + 1
    return BenchmarkResult(
        n_requests=len(latencies) + len(tally.errors),
        n_errors=len(tally.errors),
        errors_by_code=errors,
        concurrency=concurrency,
        elapsed_s=elapsed_s,
        mean_latency_ms=float(latencies.mean()),
        min_latency_ms=float(latencies.min()),
        p50_latency_ms=p50,
        p95_latency_ms=p95,
        p99_latency_ms=p99,
        max_latency_ms=float(latencies.max()),
        throughput_rps=len(latencies) / elapsed_s if elapsed_s > 0 else float("inf"),
    )
