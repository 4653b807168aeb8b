"""Connection settings and callbacks shared by every client."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError

from runtime.settings import KafkaSettings

log = logging.getLogger("runtime.kafka")


def client_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """bootstrap.servers, the security extras (never logged) and ``overrides``."""
    # Nagle's algorithm would hold small request/reply messages back waiting for ACKs.
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers, "socket.nagle.disable": True}
    config.update(kafka.security_properties())
    config.update(overrides)
    return config


def log_errors(client: str) -> Callable[[KafkaError], None]:
    """An ``error_cb`` that logs what librdkafka reports (a fatal error at ERROR level)."""

    def on_error(error: KafkaError) -> None:
        level = logging.ERROR if error.fatal() else logging.WARNING
        log.log(level, "kafka client error", extra={"client": client, "error": error.str()})

    return on_error


@dataclass
class BrokerHealth:
    """Whether a client currently has at least one broker connection up."""

    name: str
    up: bool = True
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            with self._lock:
                self.up = False
                self.last_error = error.str()
        log.warning("kafka client error", extra={"client": self.name, "error": error.str()})

    def on_stats(self, stats_json: str) -> None:
        brokers = orjson.loads(stats_json).get("brokers", {})
        # Bootstrap entries have nodeid -1; a learned broker in state UP means connectivity.
        any_up = any(b.get("state") == "UP" for b in brokers.values() if b.get("nodeid", -1) >= 0)
        with self._lock:
            if any_up:
                self.up = True
                self.last_error = None
            elif brokers:
                self.up = False

    def callbacks(self, stats_interval_ms: int = 1000) -> dict[str, Any]:
        return {
            "error_cb": self.on_error,
            "stats_cb": self.on_stats,
            "statistics.interval.ms": stats_interval_ms,
        }
