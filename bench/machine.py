"""Facts about the machine, and waiting until it is quiet enough to measure on."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
import timeit
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


SPEED_PROBE = "sum(range(1000))"
"""A fixed pure-Python workload: its time says how fast this machine's CPU is right now."""


def speed_probe_us() -> float:
    """Microseconds per :data:`SPEED_PROBE`, best of 5 (lower is faster).

    Why: the machines these benches run on differ up to 3x from one to the next and within the
    hour, so an absolute figure (predictions/s, a p50) means little without the speed it was
    measured at. Taken at the start and the end of a run; 16-20 us was a fast moment of the
    2-core EPYC machines of 2026-12-07, 28 us a slow one."""
    timer = timeit.Timer(SPEED_PROBE)
    loops = 2000
    return min(timer.repeat(repeat=5, number=loops)) / loops * 1e6


def facts() -> dict[str, Any]:
    return {
        "speed_probe_us_at_start": round(speed_probe_us(), 1),
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


JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")
"""What the JVM names its JIT compiler threads (``comm`` is cut at 15 characters)."""


def jit_cpu_s(pid: int) -> float | None:
    """CPU seconds the JVM ``pid`` has spent compiling (its JIT threads); None if not readable."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as comm:
                if comm.read().strip() not in JIT_THREADS:
                    continue
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue  # a thread that ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


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


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1]); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None


def _children_by_parent() -> dict[int, list[int]]:
    """Every live process's children (one pass over /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_cpu_s(pid: int, children: dict[int, list[int]] | None = None) -> float:
    """CPU seconds of ``pid`` and every descendant: user + system of each live process in the tree
    plus the times of the children each has reaped (cutime + cstime), so nothing a process started
    and waited for is lost; 0 once ``pid`` is gone."""
    tree = _children_by_parent() if children is None else children
    total, pending, visited = 0.0, [pid], set()
    while pending:
        current = pending.pop()
        if current in visited:
            continue
        visited.add(current)
        fields = _stat_fields(current)
        if fields is None:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS
        pending.extend(tree.get(current, []))
    return total


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> set[int]:
    """``pid`` and every live process below it."""
    tree = _children_by_parent() if children is None else children
    found, pending = set(), [pid]
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(tree.get(current, []))
    return found


def tcp_clients(ports: tuple[int, ...]) -> set[int] | None:
    """PIDs holding an established TCP connection to one of ``ports`` (``ss -tnp``; None without ss)."""
    if not ports or shutil.which("ss") is None:
        return None
    done = subprocess.run(
        ["ss", "-Htnp", "state", "established"], capture_output=True, text=True, timeout=10, check=False
    )
    wanted = {str(port) for port in ports}
    pids: set[int] = set()
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].rpartition(":")[2] in wanted:
            pids.update(int(pid) for pid in re.findall(r"pid=(\d+)", line))
    return pids


def command_of(pid: int, limit: int = 120) -> str:
    """``pid``'s command line, shortened (empty once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()[:limit]
    except OSError:
        return ""


def cpu_group(name: str) -> str:
    """The breakdown column of a probed process: worker-1, worker-2 -> workers; others as named."""
    return "workers" if name.startswith("worker") else name


GROUPS = ("gateway", "workers", "broker", "redis")
"""The rtml stack's breakdown columns, in table order."""


@dataclass(frozen=True)
class CpuReading:
    at: float
    """time.monotonic()"""
    machine_busy_s: float
    bench_s: float
    """This process + its reaped children (wrk, vegeta) + every probed process tree."""
    processes: dict[str, float]
    """CPU seconds so far of each probed process (with its descendants), by name."""
    foreign_clients: dict[int, str] = field(default_factory=dict)
    """Connected to ``CpuProbe.ports`` now, neither the bench nor a probed process (nor below
    them): PID -> command line."""


@dataclass(frozen=True)
class CpuUsage:
    """CPU of the probed processes between two readings."""

    wall_s: float
    per_process_s: dict[str, float]
    foreign_clients: dict[int, str] = field(default_factory=dict)
    """Processes outside the bench connected to the probed broker / Redis meanwhile (PID ->
    command line): their traffic is in the broker's and Redis's CPU too."""

    @property
    def total_s(self) -> float:
        return sum(self.per_process_s.values())

    def per_group_s(self) -> dict[str, float]:
        groups: dict[str, float] = {}
        for name, seconds in self.per_process_s.items():
            groups[cpu_group(name)] = groups.get(cpu_group(name), 0.0) + seconds
        return groups

    def __add__(self, other: CpuUsage) -> CpuUsage:
        names = dict.fromkeys([*self.per_process_s, *other.per_process_s])
        return CpuUsage(
            self.wall_s + other.wall_s,
            {n: self.per_process_s.get(n, 0.0) + other.per_process_s.get(n, 0.0) for n in names},
            {**self.foreign_clients, **other.foreign_clients},
        )

    def _foreign(self) -> dict[str, str]:
        return {str(pid): self.foreign_clients[pid] for pid in sorted(self.foreign_clients)}

    def per_unit(self, units: int, unit: str) -> dict[str, Any]:
        """CPU per answered request (or prediction), in ms, in total and by process and group;
        plus the cores the probed processes kept busy on average."""

        def ms(seconds: float) -> float | None:
            return 1000 * seconds / units if units > 0 else None

        return {
            "unit": unit,
            "units": units,
            "wall_s": self.wall_s,
            "cpu_s": self.total_s,
            "cores_busy": self.total_s / self.wall_s if self.wall_s > 0 else None,
            "ms_per_unit": ms(self.total_s),
            "ms_per_unit_by_group": {g: ms(s) for g, s in self.per_group_s().items()},
            "ms_per_unit_by_process": {p: ms(s) for p, s in self.per_process_s.items()},
            "cpu_s_by_process": dict(self.per_process_s),
            "foreign_infra_clients": self._foreign(),
        }

    def share_of_core(self) -> dict[str, Any]:
        """Average CPU as % of one core, in total and by process and group (idle measurements)."""

        def pct(seconds: float) -> float | None:
            return 100 * seconds / self.wall_s if self.wall_s > 0 else None

        return {
            "wall_s": self.wall_s,
            "cpu_s": self.total_s,
            "pct_of_core": pct(self.total_s),
            "pct_of_core_by_group": {g: pct(s) for g, s in self.per_group_s().items()},
            "pct_of_core_by_process": {p: pct(s) for p, s in self.per_process_s.items()},
            "cpu_s_by_process": dict(self.per_process_s),
            "foreign_infra_clients": self._foreign(),
        }


@dataclass(frozen=True)
class CpuProbe:
    """Reads of the CPU used by the processes under test, by name, and of the whole machine.

    ``processes`` maps a name (baseline; gateway, worker-N, broker, redis) to a PID; each is read
    with its descendants (:func:`tree_cpu_s`). wrk and vegeta runs are reaped children of the
    bench, so they count in this process's children times: in ``bench_s`` (to tell others' CPU)
    but in no process's usage. ``ports``: the broker's and Redis's (loopback) ports, to notice
    other clients of theirs (:attr:`CpuUsage.foreign_clients`).
    """

    processes: dict[str, int]
    ports: tuple[int, ...] = ()

    def read(self) -> CpuReading:
        children = _children_by_parent()
        per_process = {name: tree_cpu_s(pid, children) for name, pid in self.processes.items()}
        clients = tcp_clients(self.ports) or set()
        if clients:
            for pid in [os.getpid(), *self.processes.values()]:
                clients -= descendants(pid, children)
        return CpuReading(
            time.monotonic(),
            machine_busy_cpu_s(),
            own_cpu_s() + sum(per_process.values()),
            per_process,
            {pid: command_of(pid) for pid in sorted(clients)},
        )

    @staticmethod
    def other_share(before: CpuReading, after: CpuReading) -> float:
        """Others' CPU between two readings, as a share of the whole machine (all CPUs)."""
        wall = after.at - before.at
        other = (after.machine_busy_s - before.machine_busy_s) - (after.bench_s - before.bench_s)
        return max(0.0, other) / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0

    @staticmethod
    def usage(before: CpuReading, after: CpuReading) -> CpuUsage:
        """CPU seconds each probed process used between two readings (0 for one that ended)."""
        return CpuUsage(
            after.at - before.at,
            {
                name: max(0.0, after.processes.get(name, 0.0) - seconds)
                for name, seconds in before.processes.items()
            },
            {**before.foreign_clients, **after.foreign_clients},
        )

    def measure_idle(self, seconds: float) -> dict[str, Any]:
        """``seconds`` without traffic: the probed processes' CPU as % of one core, and others'."""
        before = self.read()
        time.sleep(seconds)
        after = self.read()
        return {
            **self.usage(before, after).share_of_core(),
            "other_cpu_share": self.other_share(before, after),
        }
