"""Run wrk with one of the Lua scripts in ``bench/lua`` and parse what its ``done()`` prints."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

LUA_DIR = Path(__file__).resolve().parent / "lua"
SCRIPTS = {
    "miss": LUA_DIR / "predict_miss.lua",
    "hit": LUA_DIR / "predict_hit.lua",
    "batch": LUA_DIR / "batch.lua",
    "oip": LUA_DIR / "predict_oip.lua",  # Open Inference Protocol V2 (MLServer, peer m)
}
MARKER = "BENCH_RESULT "
WRK_TIMEOUT = "10s"
_salts = itertools.count(1)


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies in milliseconds; errors = non-2xx + socket errors."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors

    @property
    def answered(self) -> int:
        """Responses with a 2xx status (wrk's requests count every completed response)."""
        return max(0, self.requests - self.non2xx)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors, "answered": self.answered}


def ensure_wrk() -> str:
    """Path of wrk; installs the Debian package when root with apt-get, else explains how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found; installing the Debian package (apt-get install -y wrk) ...", flush=True)
        if subprocess.run(["apt-get", "install", "-y", "wrk"], check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkError(
        "wrk is not installed: run `sudo apt-get install -y wrk` (Debian/Ubuntu), "
        "`brew install wrk` (macOS), or build it from https://github.com/wg/wrk"
    )


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else "?"


def run_wrk(
    base_url: str,
    script: str,
    concurrency: int,
    duration_s: float,
    *,
    threads: int = 1,
    env: dict[str, str] | None = None,
) -> WrkResult:
    """Run ``script`` (a key of :data:`SCRIPTS`) for ``duration_s`` with ``concurrency`` connections."""
    command = [
        "wrk",
        f"-t{max(1, min(threads, concurrency))}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(SCRIPTS[script]),
        base_url,
    ]
    full_env = {**os.environ, **(env or {}), "BENCH_SALT": str(next(_salts))}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=full_env, timeout=duration_s + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish: {' '.join(command)}") from exc
    return parse(done.stdout, f"{' '.join(command)} exited {done.returncode}: {done.stderr[-500:]}")


def parse(stdout: str, context: str = "") -> WrkResult:
    line = next((x for x in stdout.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        raise WrkError(f"no {MARKER.strip()} line from wrk ({context}):\n{stdout[-1500:]}")
    raw = orjson.loads(line[len(MARKER) :])
    duration_s = raw["duration_us"] / 1e6
    return WrkResult(
        requests=raw["requests"],
        duration_s=duration_s,
        rps=raw["requests"] / duration_s if duration_s > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        non2xx=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
    )
