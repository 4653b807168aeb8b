"""One HTTP port per background process (worker, drift app): ``/metrics`` from prometheus_client's
own handler, ``/health`` and ``/ready`` from the process's :class:`Probes`.

The gateway has its own routes; workers and the drift app serve nothing else over HTTP, so a
stdlib server on a daemon thread is all they need (and it answers even while their serving loop
is busy, which is what lets liveness tell a wedged loop from a slow one).
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any, Protocol

import orjson
from prometheus_client import REGISTRY
from prometheus_client.exposition import MetricsHandler


class Probes(Protocol):
    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def ready(self) -> tuple[bool, dict[str, Any]]: ...


def serve_probes(probes: Probes, host: str, port: int) -> ThreadingHTTPServer:
    """``/metrics`` (prometheus_client's own handler), ``/health`` and ``/ready`` on a daemon thread."""

    class Handler(MetricsHandler):
        registry = REGISTRY

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._answer(*probes.health())
            elif path == "/ready":
                self._answer(*probes.ready())
            else:
                super().do_GET()

        def _answer(self, ok: bool, body: dict[str, Any]) -> None:
            data = orjson.dumps(body)
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds: not worth a log line each

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    return server
