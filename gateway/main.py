"""The gateway process: ``rtml gateway`` (or ``python -m gateway.main``) serves the HTTP API with
uvicorn (uvloop + httptools); with ``gateway.processes`` > 1 it supervises that many gateway
processes sharing the port (gateway/supervisor.py)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import uvicorn

from gateway.app import create_app
from gateway.http_protocol import OneWriteHttpToolsProtocol
from gateway.lifecycle import GatewayRuntime
from gateway.supervisor import supervise
from runtime.logs import configure_logging
from runtime.settings import Settings, load_settings

log = logging.getLogger(__name__)


def run_gateway(settings: Settings) -> int:
    if settings.gateway.processes > 1:
        return supervise(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.gateway.host,
        port=settings.gateway.port,
        loop="uvloop",
        http=OneWriteHttpToolsProtocol,  # httptools, one write per response (gateway/http_protocol.py)
        access_log=False,
        server_header=False,
        timeout_keep_alive=settings.gateway.keep_alive_s,
        backlog=settings.gateway.backlog,
        log_config=None,  # keep our JSON logging
        timeout_graceful_shutdown=max(1, settings.gateway.max_timeout_ms // 1000),
        ssl_certfile=settings.gateway.tls_certfile,
        ssl_keyfile=settings.gateway.tls_keyfile,
    )
    server = DrainingServer(config, app.runtime, settings.gateway.drain_seconds(settings.env))
    if settings.gateway.reuse_port:
        server.run(sockets=[_reuse_port_socket(settings.gateway.host, settings.gateway.port)])
    else:
        server.run()
    # uvicorn exits the process itself on a failed startup; here the server ran and stopped.
    return 0 if server.started else 1


class DrainingServer(uvicorn.Server):
    """SIGTERM first turns /ready to 503 for ``drain_s`` (new requests are still served while load
    balancers notice), then stops accepting; uvicorn then waits for the requests in flight (up to
    the longest deadline) and the lifespan closes the Kafka clients. SIGINT stops at once."""

    def __init__(self, config: uvicorn.Config, runtime: GatewayRuntime, drain_s: float) -> None:
        super().__init__(config)
        self._runtime = runtime
        self._drain_s = drain_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain_s > 0 and not self._runtime.draining:
            self._runtime.draining = True
            log.info("draining: /ready answers 503", extra={"seconds": self._drain_s})
            timer = threading.Timer(self._drain_s, super().handle_exit, args=(sig, frame))
            timer.daemon = True
            timer.start()
            return
        self._runtime.draining = True
        super().handle_exit(sig, frame)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other gateway processes may bind too (the kernel balances)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.main``: the gateway alone, settings from config/env."""
    argparse.ArgumentParser(prog="rtml gateway", description="Serve the HTTP API.").parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, process="gateway")
    return run_gateway(settings)


if __name__ == "__main__":
    sys.exit(main())
