"""`rtml run` restarts what dies (rtml/supervise.py), on real child processes."""

from __future__ import annotations

import time
from pathlib import Path

from rtml.stack import Stack
from rtml.supervise import Supervisor


def test_a_killed_child_is_restarted_and_counted(tmp_path: Path) -> None:
    stack = Stack(env={}, log_dir=tmp_path)
    # `rtml infra status` exits at once: a child that keeps dying.
    child = stack.spawn("flaky", ["infra", "status"])
    supervisor = Supervisor(stack)
    deadline = time.monotonic() + 10
    try:
        while supervisor.restarts < 2:
            assert time.monotonic() < deadline, "not restarted twice within 10 s"
            supervisor.tick()
            time.sleep(0.05)
    finally:
        stack.stop_all()
    assert child.restarts == 2
    assert child.log_path.exists()
