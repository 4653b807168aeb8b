"""Start, watch and stop the local service processes that rtml provisions.

Every process is started detached (own session, output to a log file) with its PID
in a PID file we write. Stopping reads that PID file and, before any signal, checks
``/proc/PID/cmdline`` still names our command (a *marker*: one exact argv element,
such as the config file path), so a reused PID or a hand-edited file never makes
us kill someone else's process.

Errors: the :class:`~runtime.errors.InfraError` branch of :mod:`runtime.errors`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from runtime.errors import InfraError, NotOurProcess, StartupFailed, StartupTimeout

log = logging.getLogger(__name__)

# Popen objects of the children this interpreter started: polling them reaps zombies
# (a zombie still answers kill(pid, 0)) and keeps Popen.__del__ from warning.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def start_detached(
    argv: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``argv`` in its own session so it outlives the CLI that started it."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    _wait_for_argv(proc.pid)
    write_pid(pid_file, proc.pid)
    log.debug("started pid %d: %s", proc.pid, " ".join(argv))
    return proc.pid


def _wait_for_argv(pid: int, timeout_s: float = 2.0) -> None:
    """Popen returns once exec closed the CLOEXEC pipe, but the kernel sets up the new
    argv a moment later; until then /proc/PID/cmdline is empty and ``owns`` says no."""
    deadline = time.monotonic() + timeout_s
    while not command_line(pid) and is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.005)


def write_pid(pid_file: Path, pid: int) -> None:
    """Write atomically so a crash never leaves a half-written PID file."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def read_pid(pid_file: Path) -> int | None:
    """The PID in ``pid_file``, or None when the file is absent or garbled."""
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs (zombies count as dead)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) != "Z"


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def command_line(pid: int) -> list[str]:
    """argv of ``pid`` from /proc, or from ``ps`` where /proc is absent (macOS)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return []
        result = subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return result.stdout.split()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def owns(pid: int, marker: str) -> bool:
    """True when ``marker`` is one exact argument of the process's command line."""
    return marker in command_line(pid)


def running_pid(pid_file: Path, marker: str) -> int | None:
    """PID from ``pid_file`` if that process is alive and still ours."""
    pid = read_pid(pid_file)
    if pid is None or not is_alive(pid) or not owns(pid, marker):
        return None
    return pid


def stop_pid(pid: int, marker: str, timeout_s: float = 20.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout_s``; False if it was already gone.

    Raises :class:`NotOurProcess` (and sends nothing) when the command line does
    not contain ``marker``.
    """
    if not is_alive(pid):
        return False
    if not owns(pid, marker):
        raise NotOurProcess(
            f"pid {pid} runs {' '.join(command_line(pid))!r}, not {marker!r}; refusing to signal it"
        )
    os.kill(pid, signal.SIGTERM)
    if _wait_exit(pid, timeout_s):
        return True
    if is_alive(pid) and owns(pid, marker):
        log.warning("pid %d ignored SIGTERM for %.0fs; sending SIGKILL", pid, timeout_s)
        os.kill(pid, signal.SIGKILL)
    if not _wait_exit(pid, 5.0):
        raise InfraError(f"pid {pid} ({marker}) survived SIGKILL")
    return True


def stop_process(pid_file: Path, marker: str, timeout_s: float = 20.0) -> bool:
    """Stop the process named by ``pid_file``; a stale or foreign PID is left alone."""
    pid = read_pid(pid_file)
    if pid is None:
        return False
    try:
        stopped = stop_pid(pid, marker, timeout_s)
    except NotOurProcess as exc:
        log.warning("stale PID file %s: %s", pid_file, exc)
        stopped = False
    pid_file.unlink(missing_ok=True)
    return stopped


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free right now (all held open until all are picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def wait_for(
    check: Callable[[], bool],
    *,
    what: str,
    deadline: float,
    pid: int | None = None,
    log_file: Path | None = None,
    interval_s: float = 0.1,
) -> None:
    """Poll ``check`` until it passes, the process dies, or ``deadline`` (monotonic) passes."""
    while not check():
        if pid is not None and not is_alive(pid):
            raise StartupFailed(f"{what}: process {pid} exited{log_tail(log_file)}")
        if time.monotonic() >= deadline:
            raise StartupTimeout(f"{what}: not ready before the deadline{log_tail(log_file)}")
        time.sleep(interval_s)


def log_tail(log_file: Path | None, lines: int = 25) -> str:
    """Last lines of a log, formatted to append to an error message."""
    if log_file is None or not log_file.exists():
        return ""
    text = log_file.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log_file} ---\n" + "\n".join(text)


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float = 900.0) -> Iterator[None]:
    """Exclusive lock so two processes never populate the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with path.open("w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise InfraError(f"{path} stayed locked for {timeout_s:.0f}s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
