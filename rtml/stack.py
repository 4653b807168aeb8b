"""Start and stop rtml's own processes (gateway, workers) as children.

Used by ``rtml run`` (``make run``), by the end-to-end tests and by the
benchmarks, so all three exercise the same command lines an operator runs.
Only processes started here are ever signalled, by the PID we got at spawn.

A child that exits while others wait for it to become ready raises
:class:`~runtime.errors.StartupFailed` naming the child, its exit code and the last
lines of its log (:meth:`Child.exit_report`); a wait that runs out raises
:class:`~runtime.errors.StartupTimeout`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import StartupFailed, StartupTimeout

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)
    """The ``rtml`` command line it runs (to start it again)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (graceful drain), then SIGKILL if it does not exit in time."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time; killing", extra={"child": self.name})
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def exit_report(self, lines: int = 30) -> str:
        """``<name> exited with code N; last lines of <log>:`` and those lines."""
        tail = self.log_tail(lines) or "(empty)"
        return (
            f"{self.name} exited with code {self.process.returncode}; last lines of {self.log_path}:\n{tail}"
        )


def check_alive(children: Iterable[Child]) -> None:
    """Raise :class:`StartupFailed` with the exit report of the first child that has exited."""
    for child in children:
        if not child.alive:
            raise StartupFailed(child.exit_report())


@dataclass
class Stack:
    """Children sharing one environment (RTML_* settings) and a log directory."""

    env: dict[str, str]
    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Child:
        child = Child(
            name, self._popen(name, args, extra_env or {}), self._log_path(name), args, extra_env or {}
        )
        self.children.append(child)
        return child

    def restart(self, child: Child) -> None:
        """Start an exited child again with the same command line, environment and log."""
        child.process = self._popen(child.name, child.args, child.extra_env)
        child.restarts += 1
        child.started_at = time.monotonic()

    def _log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _popen(self, name: str, args: list[str], extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, **extra_env}
        with self._log_path(name).open("ab") as sink:
            return subprocess.Popen(
                [sys.executable, "-m", "rtml.cli", *args],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def worker(self, name: str, models: list[str], extra_env: dict[str, str] | None = None) -> Child:
        args = ["worker"]
        for model in models:
            args += ["--model", model]
        return self.spawn(name, args, extra_env)

    def gateway(self, name: str = "gateway", extra_env: dict[str, str] | None = None) -> Child:
        return self.spawn(name, ["gateway"], extra_env)

    def stop_all(self, timeout_s: float = 15.0) -> None:
        for child in reversed(self.children):
            child.stop(timeout_s)
        self.children.clear()


def _fails(request: urllib.request.Request, timeout_s: float, cafile: str | None = None) -> str | None:
    """None if ``request`` is answered 200, else why not."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:  # noqa: S310
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:300]!r}"
    except OSError as exc:
        return str(exc)


def wait_http_ok(
    url: str,
    timeout_s: float,
    child: Child | None = None,
    watch: Iterable[Child] = (),
    cafile: str | None = None,
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``child`` (or any of ``watch``) exits.
    ``cafile``: the CA to verify an https URL with."""
    watched = [*([child] if child is not None else []), *watch]
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        check_alive(watched)
        failure = _fails(urllib.request.Request(url), timeout_s=2, cafile=cafile)  # noqa: S310 - loopback
        if failure is None:
            return
        last = failure
        time.sleep(0.2)
    tail = f"; last lines of {child.log_path}:\n{child.log_tail()}" if child is not None else ""
    raise StartupTimeout(f"{url} not ready after {timeout_s:.0f}s ({last}){tail}")


def wait_prediction_ok(base_url: str, timeout_s: float, children: list[Child]) -> None:
    """Send an uncached demo prediction until one is answered (workers up and assigned)."""
    body = json.dumps(
        {
            "model_name": "iris_classifier",
            "features": [5.1, 3.5, 1.4, 0.2],
            "use_cache": False,
            "timeout_ms": 2000,
        }
    ).encode()
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        check_alive(children)
        request = urllib.request.Request(  # noqa: S310 - our own loopback URL
            f"{base_url}/api/v1/predict", data=body, headers={"Content-Type": "application/json"}
        )
        failure = _fails(request, timeout_s=5)
        if failure is None:
            return
        last = failure
        time.sleep(0.5)
    raise StartupTimeout(f"no prediction answered after {timeout_s:.0f}s ({last})")
