"""Drift-alert subscribers: ``rtml alerts tail`` (print) and ``rtml alerts forward`` (Slack, PagerDuty)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from runtime.settings import Settings


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def run_alerts(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of ``rtml alerts tail|forward``."""
    from drift.alerts.forward import Forwarder, Limits, sinks_from
    from drift.alerts.tail import tail

    limits = Limits(args.max_messages, args.idle_timeout)
    if args.action == "tail":
        tail(settings, args.from_beginning, args.json, limits, should_stop=_stop_on_signals().is_set)
        return 0
    sinks = sinks_from(settings)
    if not sinks:
        print(
            "rtml alerts forward: no destination; set RTML_DRIFT__SLACK_WEBHOOK_URL "
            "and/or RTML_DRIFT__PAGERDUTY_ROUTING_KEY",
            file=sys.stderr,
        )
        return 2
    stop = _stop_on_signals()

    def pause(seconds: float) -> None:
        stop.wait(seconds)

    Forwarder(settings, sinks, sleep=pause, should_stop=stop.is_set).run(limits)
    return 0
