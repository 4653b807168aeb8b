"""``rtml alerts tail``: print drift alerts as they arrive (one line each, or JSON lines).

Reads ``drift.alerts_topic`` without a consumer group commit (a private group
each run): from the end by default, from the oldest alert with
``--from-beginning``.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from pydantic import ValidationError

from drift.alerts.forward import Limits
from runtime.kafka import ALERT_TAIL, new_consumer
from runtime.settings import Settings
from schemas.drift import DriftAlert


def format_alert(alert: DriftAlert) -> str:
    end = datetime.fromtimestamp(alert.window_end_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{end} {alert.status.upper():8} {alert.severity:8} {alert.message} id={alert.alert_id}"


def tail(
    settings: Settings,
    from_beginning: bool = False,
    as_json: bool = False,
    limits: Limits | None = None,
    out: TextIO = sys.stdout,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Print alerts until stopped or a limit is reached; returns how many were printed."""
    limits = limits or Limits()
    choices = {
        "group.id": f"rtml-alerts-tail-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest" if from_beginning else "latest",
    }
    consumer = new_consumer(settings.kafka, ALERT_TAIL, choices)
    consumer.subscribe([settings.drift.alerts_topic])
    printed, idle_since = 0, time.monotonic()
    try:
        while not should_stop() and (limits.max_messages is None or printed < limits.max_messages):
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                if (
                    limits.idle_timeout_s is not None
                    and time.monotonic() - idle_since > limits.idle_timeout_s
                ):
                    break
                continue
            idle_since = time.monotonic()
            raw = message.value() or b""
            try:
                alert = DriftAlert.model_validate_json(raw)
            except ValidationError:
                print(f"unreadable alert at offset {message.offset()}: {raw[:200]!r}", file=sys.stderr)
                continue
            print(raw.decode() if as_json else format_alert(alert), file=out, flush=True)
            printed += 1
    finally:
        consumer.close()
    return printed
