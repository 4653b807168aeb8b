"""The bench's open-loop generator (bench/openloop, built with Go) against a small local HTTP
server: it keeps its schedule whatever the server does, and counts a request's latency from
when it was due, so queueing shows (the reason it replaced a closed-loop view)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.open_loop import ensure_generator, run_generator
from schemas.model_metadata import ModelMetadata
from tests.model_fixtures import DemoModels

pytestmark = pytest.mark.skipif(
    shutil.which("go") is None and shutil.which("go", path="/usr/local/go/bin") is None,
    reason="the open-loop generator is built with Go",
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    delay_s = 0.0
    bodies: list[bytes]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway answers
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _Server

    def do_POST(self) -> None:  # http.server calls do_<METHOD>
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(body)
        time.sleep(self.server.delay_s)
        status = 422 if b'"features":[9' in body else 200
        answer = b'{"ok":true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.bodies = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def generator() -> str:
    return ensure_generator()


@pytest.fixture(scope="module")
def iris(demo_models: DemoModels) -> ModelMetadata:
    registry = demo_models.registry("iris_classifier")
    return registry.metadata("iris_classifier", registry.latest("iris_classifier"))


def test_every_scheduled_request_is_sent_once_with_its_own_body(
    server: _Server, generator: str, iris: ModelMetadata
) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    result = run_generator(generator, url, iris, rate=200, duration_s=1.0, seed=7, connections=4)
    assert result.requests == 200
    assert result.ok + result.errors == 200
    assert len(server.bodies) == 200
    assert len(set(server.bodies)) == 200  # distinct bodies: every request would miss a cache
    assert result.sent_rate == pytest.approx(200, rel=0.2)
    assert result.max_ms < 1000


def test_queueing_behind_a_slow_server_counts_from_the_schedule(
    server: _Server, generator: str, iris: ModelMetadata
) -> None:
    # One connection, 20 ms a request, 100 requests/s due: requests pile up behind each other.
    server.delay_s = 0.02
    url = f"http://127.0.0.1:{server.server_address[1]}"
    result = run_generator(generator, url, iris, rate=100, duration_s=1.0, seed=7, connections=1)
    assert result.requests == 100 and result.ok == 100
    assert result.p99_from_send_ms < 200  # each exchange alone is ~20 ms
    # The 100th request was due at 0.99 s and could start only after 99 x 20 ms.
    assert result.max_ms > 800
    assert result.send_lag_p99_ms > 700
