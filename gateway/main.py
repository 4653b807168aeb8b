"""The gateway process: ``rtml gateway`` (or ``python -m gateway.main``) serves the HTTP API with
uvicorn (uvloop + httptools, one process)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvicorn

from gateway.app import create_app
from runtime.logs import configure_logging
from runtime.settings import Settings, load_settings


def run_gateway(settings: Settings) -> None:
    app = create_app(settings)
    uvicorn.run(
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.main``: the gateway alone, settings from config/env."""
    argparse.ArgumentParser(prog="rtml gateway", description="Serve the HTTP API.").parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, process="gateway")
    run_gateway(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
