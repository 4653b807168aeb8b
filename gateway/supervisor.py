"""``gateway.processes`` > 1: N gateway processes on one port, each with its own reply topic.

Why processes, not threads: the gateway's work is Python (parsing, coalescing, routing replies)
and one process is one core's worth of it. Each child binds the port with SO_REUSEPORT, so the
kernel spreads new connections over them without a proxy, and each child is a complete gateway:
its own Kafka clients and reply topic (instance id ``<base>-<n>``), so a reply always comes back
to the process that holds the waiting request.

The supervisor only starts the children, forwards SIGTERM/SIGINT to them and waits. If one
child exits, it stops the others and exits with that child's code: a half-sized gateway that
still looks alive is worse than a restart by whatever supervises us (systemd, Kubernetes).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from runtime.settings import Settings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from linux/prctl.h
STOP_GRACE_S = 5.0
"""Beyond the longest request deadline, how long a stopping child may take before it is killed."""


def child_instance_ids(settings: Settings) -> list[str]:
    base = settings.gateway.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    return [f"{base}-{index}" for index in range(settings.gateway.processes)]


def child_environment(instance_id: str) -> dict[str, str]:
    return {
        **os.environ,
        "RTML_GATEWAY__PROCESSES": "1",
        "RTML_GATEWAY__REUSE_PORT": "true",
        "RTML_GATEWAY__INSTANCE_ID": instance_id,
    }


def supervise(settings: Settings) -> int:
    """Run ``settings.gateway.processes`` gateways until a signal or the first one exits."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway.main"],
            env=child_environment(instance),
            preexec_fn=_die_with_parent,
            # Their own process group: a terminal's Ctrl-C reaches the supervisor only, which
            # forwards it once (a second SIGINT would make uvicorn skip its graceful drain).
            process_group=0,
        )
        for instance in child_instance_ids(settings)
    ]
    log.info(
        "gateway processes started",
        extra={"processes": len(children), "pids": [c.pid for c in children], "port": settings.gateway.port},
    )
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = _wait_first_exit(children)
    asked_to_stop = stopping
    if not asked_to_stop:
        log.error("a gateway process exited; stopping the others", extra={"code": code})
        forward(signal.SIGTERM, None)
    grace_s = settings.gateway.max_timeout_ms / 1000 + STOP_GRACE_S
    for child in children:
        try:
            child.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.error("gateway process did not stop; killing it", extra={"pid": child.pid})
            child.kill()
            child.wait()
    return 0 if asked_to_stop else (code if code > 0 else 1)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, even by SIGKILL (Linux), so no
    orphaned gateway keeps serving the port. preexec_fn is safe here: the supervisor has no threads."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: best effort
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_first_exit(children: list[subprocess.Popen[bytes]]) -> int:
    while True:
        for child in children:
            code = child.poll()
            if code is not None:
                return code
        time.sleep(0.5)
