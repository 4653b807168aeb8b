"""Connection settings and callbacks shared by every client."""

from __future__ import annotations

import logging
import threading
import time
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


REPEAT_LOG_INTERVAL_S = 10.0
"""A client error repeated within this long is counted, not logged again."""


class ErrorLog:
    """Logs a client's errors, each distinct one at most once per ``interval_s``.

    While a broker is down librdkafka reports a failed connect on every reconnect attempt (every
    50-100 ms per client): logged as they come that is tens of lines a second per process, which
    buries the first useful one and costs the log pipeline. Repeats are counted and the count
    goes out with the next line for that error. A fatal error is always logged."""

    def __init__(self, client: str, interval_s: float = REPEAT_LOG_INTERVAL_S) -> None:
        self._client = client
        self._interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}  # error -> (last logged at, repeats since)
        self._lock = threading.Lock()

    def __call__(self, error: KafkaError) -> None:
        text, now = error.str(), time.monotonic()
        with self._lock:
            last_at, repeats = self._last.get(text, (-self._interval_s, 0))
            if not error.fatal() and now - last_at < self._interval_s:
                self._last[text] = (last_at, repeats + 1)
                return
            if len(self._last) > 256:  # bounded: error texts carry addresses and counts
                self._last.clear()
            self._last[text] = (now, 0)
        level = logging.ERROR if error.fatal() else logging.WARNING
        extra: dict[str, Any] = {"client": self._client, "error": text}
        if repeats:
            extra["repeated"] = repeats
        log.log(level, "kafka client error", extra=extra)


def log_errors(client: str) -> Callable[[KafkaError], None]:
    """An ``error_cb`` that logs what librdkafka reports (a fatal error at ERROR level), repeats
    throttled (:class:`ErrorLog`)."""
    return ErrorLog(client)


@dataclass
class BrokerHealth:
    """Whether a client currently has at least one broker connection up."""

    name: str
    up: bool = True
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _log: ErrorLog = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._log = ErrorLog(self.name)

    def on_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            with self._lock:
                self.up = False
                self.last_error = error.str()
        self._log(error)

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
