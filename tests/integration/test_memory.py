"""The malloc-arena cap: applied on glibc, refused quietly where it does not apply."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from runtime.memory import limit_malloc_arenas


def test_zero_leaves_the_default() -> None:
    assert limit_malloc_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_glibc_accepts_the_cap_and_threads_still_allocate() -> None:
    # In a child process: the cap is process-wide and must not leak into the test session.
    code = (
        "import threading\n"
        "from runtime.memory import limit_malloc_arenas\n"
        "assert limit_malloc_arenas(2)\n"
        "def work():\n"
        "    blobs = [bytearray(4096) for _ in range(2000)]\n"
        "    assert len(blobs) == 2000\n"
        "threads = [threading.Thread(target=work) for _ in range(8)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
