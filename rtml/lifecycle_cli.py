"""``rtml models promote|rollback|retire|status|traffic``: the model lifecycle from a shell.

Each change reads the current policies from the control topic, applies the same checks as the
gateway's admin endpoints (:class:`runtime.model_admin.ModelAdmin`), publishes, and prints what
changed; every gateway and worker follows within seconds. Errors print the reason (naming what
exists) and exit 1 with nothing changed.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from runtime.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from runtime.model_admin import ModelAdmin
    from schemas.control import CanaryLimits, ModelPolicy

LIFECYCLE_ACTIONS = ("promote", "rollback", "retire", "status", "traffic", "publish", "canary", "follow")
TRAFFIC_USAGE = " --split 1=90,2=10 | --shadow 3=100 | --clear"


def add_lifecycle_arguments(models: argparse.ArgumentParser) -> None:
    models.add_argument("version", nargs="?", help="promote, retire: the version; publish: one version only")
    group = models.add_argument_group(
        "traffic", "rtml models traffic NAME --split 1=90,2=10 | --shadow 3=100 | --clear"
    )
    group.add_argument("--split", metavar="V=P,...", help="weighted A/B split, percents summing to 100")
    group.add_argument("--shadow", metavar="V=P,...", help="mirror P%% of the traffic to V (log only)")
    group.add_argument("--clear", action="store_true", help="remove the split and the shadows")
    models.add_argument("--promote", action="store_true", help="import: serve the new version at once")
    follow = models.add_argument_group("follow", "rtml models follow models:/NAME@ALIAS [--name N]")
    follow.add_argument("--interval", type=float, default=30.0, help="seconds between polls of MLflow (30)")
    follow.add_argument("--once", action="store_true", help="poll once and exit (cron, CI)")
    canary = models.add_argument_group(
        "canary", "rtml models canary NAME VERSION --steps 5,25,50,100 --step-s 60"
    )
    canary.add_argument(
        "--steps", default="5,25,50,100", help="percent of the traffic per step (5,25,50,100)"
    )
    canary.add_argument("--step-s", type=float, default=60.0, help="seconds per step (60)")
    canary.add_argument("--max-error-rate", type=float, help="roll back above this failed share (0.01)")
    canary.add_argument("--max-p99-ms", type=float, help="roll back above this p99 latency (off)")
    canary.add_argument(
        "--max-p99-ratio", type=float, help="roll back above this multiple of the default's p99 (2)"
    )
    canary.add_argument(
        "--max-shift", type=float, help="roll back above this prediction-distribution shift (0.25)"
    )
    canary.add_argument("--min-requests", type=int, help="requests judged before a step ends (50)")


def run_lifecycle(settings: Settings, args: argparse.Namespace) -> int:
    from runtime.errors import RtmlError

    if not args.name:
        print(f"usage: rtml models {args.action} NAME{_usage(args.action)}", file=sys.stderr)
        return 2
    try:
        if args.action == "status":
            return _status(settings, args.name, args.json)
        if args.action == "follow":
            return _follow(settings, args)
        admin = _admin(settings)
        policy = _change(admin, args)
    except RtmlError as exc:
        print(f"error: {exc.message}; nothing changed", file=sys.stderr)
        return 1
    print(f"{policy.model}: {policy.change} (revision {policy.revision}); default is v{policy.default}")
    return 0


def publish_registration(settings: Settings, model: str, version: str, promote: bool) -> int:
    """After ``rtml models import``: record the new version on the control topic."""
    from runtime.errors import RtmlError

    try:
        policy = _admin(settings).registered(model, version, promote=promote)
    except RtmlError as exc:
        print(
            f"error: {model} v{version} is in the registry but the control topic did not take it "
            f"({exc.message}); once Kafka is reachable, run `rtml models publish {model} {version}` to "
            f"record it (and `rtml models promote {model} {version}` if it should serve)",
            file=sys.stderr,
        )
        return 1
    if policy.default == version:
        print(f"{model} v{version} is the default version: every gateway and worker serves it within seconds")
    else:
        print(
            f"{model} v{version} serves nothing until `rtml models promote {model} {version}` "
            f"(default: v{policy.default})"
        )
    return 0


def _usage(action: str) -> str:
    return {
        "promote": " VERSION",
        "retire": " VERSION",
        "traffic": TRAFFIC_USAGE,
        "canary": " VERSION [--steps 5,25,50,100] [--step-s 60]",
        "publish": " [VERSION]",
    }.get(action, "")


def _change(admin: ModelAdmin, args: argparse.Namespace) -> ModelPolicy:
    from runtime.errors import InvalidInput
    from runtime.model_policy import parse_weights

    name, action = args.name, args.action
    if action == "canary":
        return admin.canary(name, _need_version(args), _steps(args.steps), args.step_s, _limits(args))
    if action in ("promote", "retire"):
        if not args.version:
            raise InvalidInput(f"rtml models {action} {name} VERSION: which version?")
        return admin.promote(name, args.version) if action == "promote" else admin.retire(name, args.version)
    if action == "rollback":
        return admin.rollback(name)
    if action == "publish":
        return admin.publish(name, [args.version] if args.version else None)
    if args.clear:
        return admin.clear_traffic(name)
    if args.split is None and args.shadow is None:
        raise InvalidInput("give --split V=P,..., --shadow V=P,... or --clear")
    split = parse_weights(args.split) if args.split is not None else None
    shadow = parse_weights(args.shadow) if args.shadow is not None else None
    return admin.traffic(name, split=split, shadow=shadow)


def _follow(settings: Settings, args: argparse.Namespace) -> int:
    """Poll an MLflow alias (``--once``: one poll); each import or promotion is a normal change."""
    import signal
    import threading

    from importers.follow import follow, follow_once, parse_alias_uri
    from runtime.control import ControlView
    from runtime.registry import ModelRegistry

    mlflow_name, _alias = parse_alias_uri(args.name)
    name = getattr(args, "import_name", None) or mlflow_name.lower()
    registry = ModelRegistry(settings.registry.root)
    if args.once:
        admin = _admin(settings)
        result = follow_once(args.name, name, registry, admin, admin.current(name))
        print(result.describe(name, args.name))
        return 0
    view = ControlView(settings.kafka, "rtml-follow-control")
    view.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"following {args.name} as {name} every {args.interval:g} s (Ctrl-C stops)", flush=True)
    try:
        follow(args.name, name, registry, _admin(settings, view.policy), view.policy, args.interval, stop)
    finally:
        view.stop()
    return 0


def _need_version(args: argparse.Namespace) -> str:
    from runtime.errors import InvalidInput

    if not args.version:
        raise InvalidInput(f"rtml models {args.action} {args.name} VERSION: which version?")
    return str(args.version)


def _steps(text: str) -> list[int]:
    from runtime.errors import InvalidInput

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(f"--steps '{text}' must be comma-separated percents, e.g. 5,25,50,100") from None


def _limits(args: argparse.Namespace) -> CanaryLimits:
    from schemas.control import CanaryLimits

    given = {
        "max_error_rate": args.max_error_rate,
        "max_p99_ms": args.max_p99_ms,
        "max_p99_ratio": args.max_p99_ratio,
        "max_shift": args.max_shift,
        "min_requests": args.min_requests,
    }
    return CanaryLimits(**{key: value for key, value in given.items() if value is not None})


def _admin(settings: Settings, current: Callable[[str], ModelPolicy | None] | None = None) -> ModelAdmin:
    import getpass
    import socket

    from runtime.artifacts import ArtifactStore
    from runtime.control import ControlWriter, read_policies
    from runtime.model_admin import ModelAdmin
    from runtime.registry import ModelRegistry

    if current is None:
        current = read_policies(settings.kafka).get
    writer = ControlWriter(settings.kafka, "rtml-cli")
    by = f"{getpass.getuser()}@{socket.gethostname()} (cli)"
    artifacts = ArtifactStore(settings.kafka, "rtml-cli-artifacts")
    return ModelAdmin(ModelRegistry(settings.registry.root), writer, current, by, artifacts)


def _status(settings: Settings, name: str, as_json: bool) -> int:
    import orjson
    import redis

    from runtime.control import read_policies
    from runtime.fleet import parse_fleet
    from runtime.model_status import build_status, render_status
    from runtime.registry import ModelRegistry

    registry = ModelRegistry(settings.registry.root)
    versions = {version: registry.metadata(name, version) for version in registry.versions(name)}
    policy = read_policies(settings.kafka).get(name)
    members: list[dict[str, object]] = []
    client = redis.Redis.from_url(settings.redis.url.get_secret_value(), socket_timeout=2)
    try:
        key = f"{settings.redis.fleet_prefix}{name}"
        members, stale = parse_fleet(client.hgetall(key))  # type: ignore[arg-type]
        if stale:
            client.hdel(key, *stale)
    except redis.RedisError as exc:
        print(f"warning: Redis unreachable, no fleet information: {exc}", file=sys.stderr)
    finally:
        client.close()
    status = build_status(name, versions, policy, members)
    print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() if as_json else render_status(status))
    return 0
