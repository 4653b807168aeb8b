"""Destinations of ``rtml alerts forward``: a Slack incoming webhook and PagerDuty Events API v2.

Each :class:`Sink` turns a :class:`~schemas.drift.DriftAlert` into one HTTP POST.
:func:`deliver` retries transient failures (connection errors, timeouts, 429 and
5xx answers) with exponential backoff and jitter; other 4xx answers are final.
PagerDuty gets ``trigger`` for firing records and ``resolve`` for resolved ones,
both with ``dedup_key = alert_id``, so a redelivered trigger updates the same
incident and the resolve closes it.
"""

from __future__ import annotations

import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from runtime.errors import DeliveryError
from schemas.drift import DriftAlert

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class Sink(Protocol):
    @property
    def name(self) -> str: ...

    def request(self, alert: DriftAlert) -> tuple[str, dict[str, Any]]:
        """URL and JSON body for ``alert``."""
        ...


@dataclass(frozen=True)
class SlackSink:
    url: str = field(repr=False)
    name: str = "slack"

    def request(self, alert: DriftAlert) -> tuple[str, dict[str, Any]]:
        icon = ":rotating_light:" if alert.status == "firing" else ":white_check_mark:"
        return self.url, {"text": f"{icon} {alert.message} (alert {alert.alert_id})"}


@dataclass(frozen=True)
class PagerDutySink:
    url: str
    routing_key: str = field(repr=False)
    name: str = "pagerduty"

    def request(self, alert: DriftAlert) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger" if alert.status == "firing" else "resolve",
            "dedup_key": alert.alert_id,
        }
        if alert.status == "firing":
            body["payload"] = {
                "summary": alert.message[:1024],
                "source": f"rtml-drift/{alert.model}/v{alert.version}",
                "severity": alert.severity,
                "component": alert.model,
                "group": f"{alert.model} v{alert.version}",
                "class": f"drift/{alert.statistic}",
                "custom_details": alert.model_dump(mode="json", exclude={"message"}),
            }
        return self.url, body


def post_json(url: str, body: dict[str, Any], timeout_s: float) -> int:
    """POST ``body``; returns the status, raises DeliveryError."""
    request = urllib.request.Request(  # noqa: S310 - URLs come from the operator's settings
        url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode(errors="replace")
        raise DeliveryError(f"HTTP {exc.code}: {detail}", exc.code in RETRYABLE_STATUS) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based): exponential, half of it jittered."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def deliver(
    sink: Sink,
    alert: DriftAlert,
    policy: RetryPolicy,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
) -> str | None:
    """Deliver with retries; None on success, else the last error."""
    url, body = sink.request(alert)
    error = "not attempted"
    for attempt in range(1, policy.max_attempts + 1):
        try:
            post_json(url, body, timeout_s)
            return None
        except DeliveryError as exc:
            error = str(exc)
            log.warning(
                "alert delivery failed",
                extra={"sink": sink.name, "alert_id": alert.alert_id, "attempt": attempt, "error": error},
            )
            if not exc.retryable or attempt == policy.max_attempts or should_stop():
                break
            sleep(policy.delay(attempt))
    return error
