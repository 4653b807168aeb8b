"""The gateway process: ``rtml gateway`` (or ``python -m gateway.main``) serves the HTTP API with
uvicorn (uvloop + httptools); with ``gateway.processes`` > 1 it supervises that many gateway
processes sharing the port (gateway/supervisor.py)."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

import uvicorn

from gateway.app import create_app
from gateway.supervisor import supervise
from runtime.logs import configure_logging
from runtime.settings import Settings, load_settings


def run_gateway(settings: Settings) -> int:
    if settings.gateway.processes > 1:
        return supervise(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.gateway.host,
        port=settings.gateway.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        timeout_keep_alive=settings.gateway.keep_alive_s,
        backlog=settings.gateway.backlog,
        log_config=None,  # keep our JSON logging
        timeout_graceful_shutdown=max(1, settings.gateway.max_timeout_ms // 1000),
    )
    server = uvicorn.Server(config)
    if settings.gateway.reuse_port:
        server.run(sockets=[_reuse_port_socket(settings.gateway.host, settings.gateway.port)])
    else:
        server.run()
    # uvicorn exits the process itself on a failed startup; here the server ran and stopped.
    return 0 if server.started else 1


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
