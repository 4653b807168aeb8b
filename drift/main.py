"""The drift processes: ``rtml drift`` (the detector, or ``python -m drift.main``) and
``rtml alerts tail|forward`` (its subscribers)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from runtime.logs import configure_logging
from runtime.settings import Settings, load_settings


def add_alert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["tail", "forward"])
    parser.add_argument("--from-beginning", action="store_true", help="tail: start at the oldest alert")
    parser.add_argument("--json", action="store_true", help="tail: print the DriftAlert JSON lines")
    parser.add_argument("--max-messages", type=int, default=None, help="stop after this many alerts")
    parser.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")


def run_detector(settings: Settings, _args: argparse.Namespace | None = None) -> int:
    """The Faust app over the prediction log, until SIGTERM/SIGINT; returns the exit code."""
    from drift.app import run_drift

    return run_drift(settings)


def run_alert_subscriber(settings: Settings, args: argparse.Namespace) -> int:
    from drift.alerts import run_alerts

    return run_alerts(settings, args)


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="rtml drift", description="Drift detection over the prediction log."
    ).parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, process="drift")
    return run_detector(settings)


if __name__ == "__main__":
    sys.exit(main())
