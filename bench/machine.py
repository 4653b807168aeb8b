"""Facts about the machine, and waiting until it is quiet enough to measure on."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from typing import Any


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def facts() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
        "memory_total_mb": _mem_total_mb(),
    }


def _mem_total_mb() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            return float(meminfo.readline().split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        return None


def kafka_brokers(exclude: set[int] | None = None) -> list[int]:
    """PIDs of running Kafka brokers (`pgrep -f kafka.Kafka`), minus ``exclude``."""
    done = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True, check=False)
    pids = {int(p) for p in done.stdout.split() if p.isdigit()} - {os.getpid()}
    return sorted(pids - (exclude or set()))


def wait_until_quiet(
    max_wait_s: float, every_s: float = 20.0, max_load: float = 1.0, exclude: set[int] | None = None
) -> dict[str, Any]:
    """Wait (bounded) until no other Kafka broker runs and the 1-minute load is below ``max_load``."""
    started = time.monotonic()
    while True:
        brokers, load = kafka_brokers(exclude), os.getloadavg()[0]
        waited = time.monotonic() - started
        quiet = not brokers and load < max_load
        if quiet or waited >= max_wait_s:
            return {"quiet": quiet, "waited_s": round(waited, 1), "load_1m": load, "other_brokers": brokers}
        print(
            f"waiting for a quiet machine: load {load:.2f}, other Kafka brokers {brokers or 'none'} "
            f"({waited:.0f}/{max_wait_s:.0f} s)",
            flush=True,
        )
        time.sleep(min(every_s, max(0.0, max_wait_s - waited)))
