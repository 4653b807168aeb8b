"""The unit tier's guard (tests/unit/conftest.py) refuses the network and child processes, and
leaves asyncio (whose loops use a Unix socketpair) working."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from tests.unit.conftest import UnitTierViolation


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_tcp_connect_and_bind_are_refused(family: socket.AddressFamily) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        with pytest.raises(UnitTierViolation, match="tests/integration"):
            sock.connect((host, 9))
        with pytest.raises(UnitTierViolation):
            sock.connect_ex((host, 9))
        with pytest.raises(UnitTierViolation):
            sock.bind((host, 0))


def test_create_connection_and_popen_are_refused() -> None:
    with pytest.raises(UnitTierViolation, match="create_connection"):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
    with pytest.raises(UnitTierViolation, match="Popen"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)


def test_the_refusal_is_not_an_os_error() -> None:
    """Code that retries on OSError (HTTP probes, reconnect loops) must not swallow it."""
    assert not issubclass(UnitTierViolation, OSError)


def test_unix_socketpairs_and_asyncio_still_work() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"ping")
        assert right.recv(4) == b"ping"

    async def main() -> int:
        await asyncio.sleep(0)
        return await asyncio.get_running_loop().run_in_executor(None, lambda: 42)

    assert asyncio.run(main()) == 42
