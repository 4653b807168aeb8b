"""``rtml gateway``: serve the HTTP API with uvicorn (uvloop + httptools, one process)."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from rtml.settings import Settings


def run_gateway(settings: Settings) -> None:
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.gateway.host,
        port=settings.gateway.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        timeout_keep_alive=settings.gateway.keep_alive_s,
        backlog=settings.gateway.backlog,
        log_config=None,  # keep our JSON logging
        timeout_graceful_shutdown=max(1, settings.gateway.max_timeout_ms // 1000),
    )
