"""A local, throwaway-grade Redis server: 127.0.0.1 only, no persistence.

rtml uses Redis as a prediction cache, so nothing here needs to survive a restart.
On a fresh CI machine (root, Debian) the ``redis-server`` package is installed on
first use; elsewhere a missing binary is a clear error.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis as redis_client
from redis.exceptions import RedisError

from rtml.infra import process
from runtime.errors import InfraError, PortInUse, PrerequisiteMissing
from runtime.settings import Settings

log = logging.getLogger(__name__)

SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/bin")


@dataclass(frozen=True)
class RedisNode:
    """Where one local Redis server lives and listens."""

    state_dir: Path
    port: int
    host: str = "127.0.0.1"

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisNode:
        return cls(settings.infra.state_dir / "redis", settings.infra.redis_port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def conf_file(self) -> Path:
        return self.state_dir / "redis.conf"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "redis.pid"


def find_redis_server(*, install: bool = True) -> str:
    """Path of redis-server; as root with apt-get, install it when missing."""
    found = _which_redis()
    if found is not None:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install()
        found = _which_redis()
        if found is not None:
            return found
    raise PrerequisiteMissing(
        "`redis-server` not found (looked on PATH and in " + ", ".join(SEARCH_DIRS) + "): "
        "install it with `apt-get install -y redis-server`, "
        "or set REDIS_URL=redis://host:port/0 to use an existing server"
    )


def _which_redis() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    candidates = (Path(d) / "redis-server" for d in SEARCH_DIRS)
    return next((str(c) for c in candidates if os.access(c, os.X_OK)), None)


def _apt_install() -> None:
    """The path a fresh CI machine takes; a few tens of seconds, once."""
    log.info("redis-server missing; installing it with apt-get (running as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "redis-server"]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
        if result.returncode != 0:
            raise PrerequisiteMissing(
                f"{' '.join(argv)} failed (exit {result.returncode}): {result.stderr[-2000:]}\n"
                "install redis-server yourself or set REDIS_URL=redis://host:port/0"
            )


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def write_config(node: RedisNode) -> None:
    """No persistence; ``set-proc-title no`` keeps argv intact for the PID ownership check."""
    node.data_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by rtml.infra.redis on every start.",
        f"bind {node.host}",
        f"port {node.port}",
        "protected-mode yes",
        "daemonize no",
        'save ""',
        "appendonly no",
        f"dir {_quote(str(node.data_dir))}",
        'logfile ""',
        "set-proc-title no",
    ]
    node.conf_file.write_text("\n".join(lines) + "\n")


def start(node: RedisNode, *, timeout_s: float = 15.0, install: bool = True) -> str:
    """Start redis-server (or find ours running) and return its URL once it answers PING."""
    began = time.monotonic()
    pid = running_pid(node)
    if pid is not None:
        log.info("redis already running (pid %d) at %s", pid, node.url)
        _wait_ready(node, pid, began + timeout_s)
        return node.url
    pid = _launch(node, install)
    try:
        _wait_ready(node, pid, began + timeout_s)
    except InfraError:
        stop(node)
        raise
    log.info("redis ready at %s after %.1fs", node.url, time.monotonic() - began)
    return node.url


def _wait_ready(node: RedisNode, pid: int, deadline: float) -> None:
    process.wait_for(
        lambda: ping(node.url),
        what=f"redis at {node.url}",
        deadline=deadline,
        pid=pid,
        log_file=node.log_file,
    )


def _launch(node: RedisNode, install: bool) -> int:
    server = find_redis_server(install=install)
    if process.port_open(node.host, node.port):
        raise PortInUse(
            f"{node.host}:{node.port} is in use by a process rtml did not start (a system redis?); "
            f"stop it, choose another port (RTML_INFRA__REDIS_PORT) "
            f"or set REDIS_URL=redis://{node.host}:{node.port}/0 to use it"
        )
    write_config(node)
    pid = process.start_detached(
        [server, str(node.conf_file)], pid_file=node.pid_file, log_file=node.log_file, cwd=node.state_dir
    )
    log.info("starting redis (pid %d) at %s", pid, node.url)
    return pid


def ping(url: str, timeout_s: float = 1.0) -> bool:
    """True when the server at ``url`` answers PING within ``timeout_s``."""
    client = redis_client.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


def running_pid(node: RedisNode) -> int | None:
    """PID of our redis-server for this node, if it runs."""
    return process.running_pid(node.pid_file, str(node.conf_file))


def stop(node: RedisNode, timeout_s: float = 10.0) -> bool:
    """SIGTERM (SIGKILL after ``timeout_s``); True if it was running."""
    stopped = process.stop_process(node.pid_file, str(node.conf_file), timeout_s)
    if stopped:
        log.info("stopped redis at %s", node.url)
    return stopped
