"""``rtml run``'s start-up and its failure report, with fake processes (no subprocess, no socket):
a process that exits while the others start is named with its exit code and the last lines of
its log, and every port it is given is its own. (The real command: tests/integration/test_run_command.py.)"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from rtml import run as run_module
from rtml.infra import InfraEndpoints
from rtml.run import MetricsPorts, run_stack
from rtml.stack import Child, Stack, check_alive, wait_http_ok, wait_prediction_ok
from rtml.supervise import Supervisor
from runtime.errors import StartupFailed
from runtime.settings import Settings, load_settings
from tests.model_fixtures import DemoModels

ADDRESS_IN_USE = "OSError: [Errno 98] Address already in use"


class FakeProcess:
    """What Child asks of a Popen: poll, send_signal, wait, kill, returncode."""

    def __init__(self, exit_code: int | None = None) -> None:
        self.returncode = exit_code
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        self.returncode = -signum

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def child(tmp_path: Path, name: str, exit_code: int | None = None, log: str = "") -> Child:
    log_path = tmp_path / f"{name}.log"
    log_path.write_text(log)
    return Child(name, FakeProcess(exit_code), log_path)  # type: ignore[arg-type]


def test_the_exit_report_names_the_process_its_code_and_its_last_log_lines(tmp_path: Path) -> None:
    lines = [f"line {i}" for i in range(50)] + [ADDRESS_IN_USE]
    dead = child(tmp_path, "worker-2", 1, "\n".join(lines))
    report = dead.exit_report(lines=3)
    head = f"worker-2 exited with code 1; last lines of {tmp_path / 'worker-2.log'}:"
    assert report == f"{head}\nline 48\nline 49\n{ADDRESS_IN_USE}"
    assert child(tmp_path, "silent", 3).exit_report().endswith("silent.log:\n(empty)")


def test_waits_fail_at_once_when_a_watched_process_has_exited(tmp_path: Path) -> None:
    gateway = child(tmp_path, "gateway")
    dead = child(tmp_path, "worker-2", 1, ADDRESS_IN_USE)
    # The dead worker is noticed before any HTTP request is made (none could be, in the unit tier).
    with pytest.raises(
        StartupFailed, match=r"worker-2 exited with code 1; last lines of .*\n.*Address already in use"
    ):
        wait_http_ok("http://127.0.0.1:1/ready", timeout_s=5, child=gateway, watch=[gateway, dead])
    with pytest.raises(StartupFailed, match="worker-2 exited with code 1"):
        wait_prediction_ok("http://127.0.0.1:1", timeout_s=5, children=[gateway, dead])
    check_alive([gateway])


@pytest.mark.parametrize(
    ("ports", "problem"),
    [
        (MetricsPorts(workers=(9101,)), "give --worker-metrics-port 2 times, not 1"),
        (MetricsPorts(workers=(9101, 9101)), "every process needs its own port"),
        (MetricsPorts(workers=(9101, 9102), drift=8000), "every process needs its own port"),
        (MetricsPorts(workers=(9101, 70000)), "ports must be 1..65535"),
    ],
)
def test_ports_that_cannot_work_are_refused(ports: MetricsPorts, problem: str) -> None:
    found = ports.problem(gateway_port=8000)
    assert found is not None and problem in found


def test_default_and_explicit_ports() -> None:
    assert MetricsPorts.from_args(None, None) == MetricsPorts((9101, 9102), 9111)
    assert MetricsPorts.from_args([7001, 7002], 0) == MetricsPorts((7001, 7002), 0)
    assert MetricsPorts((0, 0), 0).problem(gateway_port=8000) is None  # 0: no metrics endpoint


class FakeInfra:
    def __init__(self) -> None:
        self.downs = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(run_module.infra, "external_kafka", lambda: None)
        monkeypatch.setattr(run_module.infra, "external_redis", lambda: None)
        monkeypatch.setattr(
            run_module.infra, "up", lambda settings: InfraEndpoints("127.0.0.1:1", "redis://x")
        )
        monkeypatch.setattr(run_module.infra, "down", self.down)

    def down(self, settings: Settings) -> None:
        self.downs += 1


@pytest.fixture
def settings(demo_models: DemoModels, tmp_path: Path) -> Settings:
    root = demo_models.registry("iris_classifier").root
    return load_settings(registry={"root": root}, infra={"state_dir": tmp_path / "state"})


def test_a_process_dying_at_start_up_is_reported_and_everything_stops(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    infra = FakeInfra()
    infra.install(monkeypatch)
    spawned: dict[str, tuple[list[str], dict[str, str]]] = {}

    def spawn(stack: Stack, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Child:
        spawned[name] = (args, extra_env or {})
        started = child(stack.log_dir, name, *((1, ADDRESS_IN_USE) if name == "worker-2" else ()))
        stack.children.append(started)
        return started

    monkeypatch.setattr(Stack, "spawn", spawn)
    (settings.infra.state_dir / "logs").mkdir(parents=True)
    handler = signal.getsignal(signal.SIGINT)
    assert run_stack(settings, MetricsPorts((7001, 7002), 7003)) == 1
    out = capsys.readouterr().out
    log_path = settings.infra.state_dir / "logs" / "worker-2.log"
    assert (
        f"rtml run could not start: worker-2 exited with code 1; last lines of {log_path}:\n{ADDRESS_IN_USE}"
        in out
    )
    assert out.rstrip().endswith("stopping gateway and workers ...\nstopped.")
    assert infra.downs == 1 and signal.getsignal(signal.SIGINT) == handler
    assert {name: env for name, (_args, env) in spawned.items()} == {
        "worker-1": {"RTML_WORKER__METRICS_PORT": "7001"},
        "worker-2": {"RTML_WORKER__METRICS_PORT": "7002"},
        "drift": {"RTML_DRIFT__METRICS_PORT": "7003"},
        "gateway": {},
    }


def test_a_process_exiting_later_is_reported_with_its_log_and_scheduled_for_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: once up, rtml run restarts what dies (the restart itself: tests/integration)."""
    stack = Stack(env={}, log_dir=tmp_path)
    stack.children += [child(tmp_path, "gateway"), child(tmp_path, "drift", 2, "faust: lost its changelog")]
    supervisor = Supervisor(stack)
    supervisor.tick()
    out = capsys.readouterr().out
    assert "drift died; restarting it in 1 s: drift exited with code 2; last lines of" in out
    assert "faust: lost its changelog" in out and "gateway" not in out
    supervisor.tick()  # not due yet: no second report, no restart
    assert capsys.readouterr().out == "" and supervisor.restarts == 0


def test_bad_ports_stop_rtml_run_before_it_starts_anything(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("infra started despite bad ports")

    monkeypatch.setattr(run_module.infra, "up", refuse)
    assert run_stack(settings, MetricsPorts((7001, 7001), 7003)) == 2
    assert "every process needs its own port" in capsys.readouterr().err
