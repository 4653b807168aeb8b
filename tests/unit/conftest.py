"""The unit tier: no network, no child processes, no Kafka or Redis (``make unit``, under a minute).

Every test here runs with TCP/IP connect and bind, ``socket.create_connection`` and
``subprocess.Popen`` replaced by a function that raises :class:`UnitTierViolation`. Unix
sockets stay usable: asyncio's event loops talk to themselves over a ``socketpair``.
A test that needs a socket or a process belongs in ``tests/integration``.

One library would start a process behind our back: scikit-learn asks joblib for the number of
physical cores, which runs ``lscpu`` once per interpreter, unless ``OMP_NUM_THREADS`` is set.
The guard sets it (to the number of logical CPUs, OpenMP's own default) when it is unset.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

INTERNET_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})
INTEGRATION_FIXTURES = frozenset(
    {"kafka_bootstrap", "redis_url", "throwaway_kafka", "throwaway_redis", "stack", "stack_factory"}
)


class UnitTierViolation(RuntimeError):
    """Not an OSError on purpose: code that retries on OSError must not swallow it."""


def _refuse(what: str) -> UnitTierViolation:
    return UnitTierViolation(f"{what} in a unit test; tests needing the network go in tests/integration")


def _guarded(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family in INTERNET_FAMILIES:
            raise _refuse(f"socket.{name}({address!r})")
        return original(self, address, *args)

    return method


def _no_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    raise _refuse(f"socket.create_connection({address!r})")


class _NoPopen:
    def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
        raise UnitTierViolation(
            f"subprocess.Popen({args!r}) in a unit test; tests that start processes go in tests/integration"
        )


@pytest.fixture(autouse=True)
def unit_tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse network access, child processes and the integration fixtures."""
    needs = sorted(INTEGRATION_FIXTURES.intersection(request.fixturenames))
    if needs:
        pytest.fail(
            f"{request.node.nodeid} uses {', '.join(needs)}: move it to tests/integration", pytrace=False
        )
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _guarded(name, getattr(socket.socket, name)))
    monkeypatch.setattr(socket, "create_connection", _no_create_connection)
    monkeypatch.setattr(subprocess, "Popen", _NoPopen)
    if not os.environ.get("OMP_NUM_THREADS"):
        monkeypatch.setenv("OMP_NUM_THREADS", str(os.cpu_count() or 1))
