"""Facts about the machine, and waiting until it is quiet enough to measure on."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_cpu_s() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: user+nice+system+irq+softirq+steal)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_s() -> float:
    """This process plus its reaped children (baseline, wrk, gateway, workers once stopped)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class CpuAccount:
    """How much of the machine's CPU went to something other than the bench while it ran.

    other = machine busy - (bench process + reaped children + local Kafka/Redis), over the
    wall time; a share of nproc x wall near 0 means the figures were not disturbed by others.
    """

    wall0: float = field(default_factory=time.monotonic)
    busy0: float = field(default_factory=machine_busy_cpu_s)
    own0: float = field(default_factory=own_cpu_s)
    infra0: dict[int, float] = field(default_factory=dict)
    result: dict[str, float] | None = None

    def note_infra_start(self, pids: list[int]) -> None:
        """Infra already running when the bench starts: count only its CPU from now on."""
        self.infra0 = {pid: process_cpu_s(pid) for pid in pids}

    def finish(self, infra_pids: list[int]) -> dict[str, float]:
        """Close the account (call before stopping local infra, whose CPU is read from /proc)."""
        if self.result is None:
            wall = time.monotonic() - self.wall0
            busy = machine_busy_cpu_s() - self.busy0
            infra = sum(process_cpu_s(pid) - self.infra0.get(pid, 0.0) for pid in infra_pids)
            ours = own_cpu_s() - self.own0 + infra
            other = max(0.0, busy - ours)
            self.result = {
                "wall_s": wall,
                "machine_busy_cpu_s": busy,
                "bench_cpu_s": ours,
                "other_cpu_s": other,
                "other_share_of_machine": other / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0,
            }
        return self.result


CpuReading = tuple[float, float, float]
"""(monotonic time, machine busy CPU-s, bench CPU-s)."""


@dataclass(frozen=True)
class CpuProbe:
    """Reads to tell, per measured run, how much CPU processes other than the bench took.

    ``pids`` are the live processes under test (baseline or gateway + workers, local Kafka and
    Redis); wrk runs are reaped children, so they count in this process's children times.
    """

    pids: list[int]

    def read(self) -> CpuReading:
        ours = own_cpu_s() + sum(process_cpu_s(pid) for pid in self.pids)
        return time.monotonic(), machine_busy_cpu_s(), ours

    @staticmethod
    def other_share(before: CpuReading, after: CpuReading) -> float:
        """Others' CPU between two readings, as a share of the whole machine (all CPUs)."""
        wall = after[0] - before[0]
        other = (after[1] - before[1]) - (after[2] - before[2])
        return max(0.0, other) / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0
