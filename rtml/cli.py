"""The ``rtml`` command line: every component starts on its own from here.

rtml run [--worker-metrics-port P]... [--drift-metrics-port P]   whole stack with demo models (make run)
rtml gateway                     HTTP gateway
rtml gateway gc-reply-topics [--dry-run] [--watch S]   delete reply topics of gateways that are gone
rtml worker --model NAME|all     a worker process (repeat --model to host several)
rtml infra up|down|status        local Kafka (KRaft) and Redis on 127.0.0.1
rtml models train-demo|list|show the model registry
rtml models import SOURCE --name NAME [--sample CSV] [--promote]   convert to ONNX, prove parity, register
rtml models promote NAME V | rollback NAME | retire NAME V   change the version that serves (no restart)
rtml models traffic NAME --split 1=90,2=10 | --shadow 3=100 | --clear   A/B split and shadow traffic
rtml models status NAME [--json]   default version, policy, loaded versions, traffic share
rtml models publish NAME [V]     ship versions registered here to the artifact topic (other machines)
rtml models canary NAME V [--steps 5,25,50,100] [--step-s 60]   ramp V up; auto-promote or roll back
rtml models follow models:/NAME@ALIAS [--name N] [--once]   import and promote as an MLflow alias moves
rtml cache invalidate NAME [VERSION]   drop a model's (or one version's) cached predictions
rtml keys create NAME --scopes predict,read [--rate R] | list | revoke NAME   API keys
rtml topics ensure               create every topic (requests per model, log, dead letters, drift)
rtml schemas export [--out DIR] [--check]   JSON Schema files for non-Python producers
rtml drift                       drift detection over the prediction log (Faust app)
rtml alerts tail|forward         print drift alerts / deliver them to Slack and PagerDuty
rtml predict MODEL --features ... | --csv IN --out OUT   predict through a gateway (client SDK)
rtml bench MODEL [-n N] [-c C]   latency and throughput through a gateway (client SDK)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rtml.lifecycle_cli import LIFECYCLE_ACTIONS
from runtime.errors import SettingsError
from runtime.settings import Settings, load_settings


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtml", description="Real-time ML model serving over Kafka.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start Kafka, Redis, demo models, two workers and the gateway")
    run.add_argument(
        "--worker-metrics-port",
        dest="worker_metrics_ports",
        type=int,
        action="append",
        metavar="PORT",
        help="Prometheus port of one worker, given once per worker (default: 9101, 9102; 0: none)",
    )
    run.add_argument(
        "--drift-metrics-port",
        type=int,
        metavar="PORT",
        help="Prometheus port of the drift app (default: 9111)",
    )
    gateway = commands.add_parser("gateway", help="run the HTTP gateway")
    gateway.add_argument(
        "action",
        nargs="?",
        choices=["gc-reply-topics"],
        help="gc-reply-topics: delete the reply topics of gateways that are gone, then exit",
    )
    gateway.add_argument("--dry-run", action="store_true", help="gc-reply-topics: only say what would go")
    gateway.add_argument(
        "--watch",
        type=float,
        metavar="S",
        help="gc-reply-topics: watch the heartbeats this long first (default: three heartbeat "
        "periods; topics without any heartbeat need gateway.reply_topic_orphan_after_s)",
    )
    from workers.main import add_arguments as add_worker_arguments

    add_worker_arguments(commands.add_parser("worker", help="run a worker process"))
    infra = commands.add_parser("infra", help="local Kafka and Redis")
    infra.add_argument("action", choices=["up", "down", "status"])
    models = commands.add_parser("models", help="model registry")
    models.add_argument(
        "action",
        choices=["train-demo", "list", "show", "import", *LIFECYCLE_ACTIONS],
    )
    models.add_argument("name", nargs="?", help="show: model name; import: SOURCE (file, dir, models:/ URI)")
    models.add_argument("--force", action="store_true", help="train-demo: retrain even if registered")
    models.add_argument("--json", action="store_true", help="list, status: JSON for scripts")
    models.add_argument("--url", help="list: ask this gateway (http://HOST:PORT), not the local registry")
    from rtml.lifecycle_cli import add_lifecycle_arguments

    add_lifecycle_arguments(models)
    if command == "models":  # importing the importers costs ~0.5 s: only when they can be used
        from importers.cli import add_import_arguments

        add_import_arguments(models)
    from rtml.keys_cli import add_arguments as add_keys_arguments

    add_keys_arguments(commands.add_parser("keys", help="API keys (gateway.auth: required)"))
    cache = commands.add_parser("cache", help="the prediction cache in Redis")
    cache.add_argument("action", choices=["invalidate"])
    cache.add_argument("model", help="model name")
    cache.add_argument("version", nargs="?", help="only this version (default: every version)")
    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_argument("action", choices=["ensure"])
    schemas = commands.add_parser("schemas", help="message schemas")
    schemas.add_argument("action", choices=["export"])
    schemas.add_argument("--check", action="store_true", help="fail if the export in DIR is stale")
    schemas.add_argument(
        "--out",
        metavar="DIR",
        help="directory of the <name>.schema.json files ('-': print them as one JSON document). "
        "Default: the checkout's schemas/json; for an installed rtml, '-' (and --check compares "
        "the copy shipped in the package)",
    )
    commands.add_parser("drift", help="drift detection over the prediction log (Faust app)")
    from drift.main import add_alert_arguments

    add_alert_arguments(commands.add_parser("alerts", help="drift alert subscribers"))
    _client_commands(commands, load=command in ("predict", "bench", None))
    return parser


def _client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser], load: bool) -> None:
    """``predict`` and ``bench`` come from the client SDK, its own distribution (pip install ./client).
    Servers (gateway, workers) do not pay for importing it."""
    try:
        if not load:
            raise ImportError("not needed for this command")
        from rtml_client.cli import add_commands
    except ImportError:
        for name in ("predict", "bench"):
            stub = commands.add_parser(name, help="needs the client SDK: pip install ./client")
            stub.add_argument("args", nargs=argparse.REMAINDER)
        return
    add_commands(commands)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if not word.startswith("-")), None)
    args = _parser(command).parse_args(words)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"rtml {args.command}: {exc}", file=sys.stderr)
        return 2
    from runtime.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json, process=args.command)
    handler = _HANDLERS[args.command]
    return handler(settings, args)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from rtml.run import MetricsPorts, run_stack

    return run_stack(settings, MetricsPorts.from_args(args.worker_metrics_ports, args.drift_metrics_port))


def _gateway(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "gc-reply-topics":
        return _gc_reply_topics(settings, args)
    from gateway.main import run_gateway

    return run_gateway(settings)


def _gc_reply_topics(settings: Settings, args: argparse.Namespace) -> int:
    """``rtml gateway gc-reply-topics``: the janitor every gateway runs, once (CronJobs, operators)."""
    from gateway.reply_janitor import sweep_reply_topics
    from gateway.reply_orphans import OrphanPolicy

    policy = OrphanPolicy(settings.gateway.reply_topic_orphan_after_s)
    watch_s = policy.confirm_s if args.watch is None else max(0.0, args.watch)
    verdicts, deleted = sweep_reply_topics(settings.kafka, settings.gateway, watch_s, args.dry_run)
    for verdict in verdicts:
        if verdict.topic in deleted:
            action = "deleted"
        elif verdict.orphan:
            action = "would delete" if args.dry_run else "not deleted"
        else:
            action = "kept"
        print(f"{verdict.topic}\t{action}: {verdict.reason}")
    return 0 if len(deleted) == sum(v.orphan for v in verdicts) or args.dry_run else 1


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from workers.main import run

    return run(settings, args)


def _infra(settings: Settings, args: argparse.Namespace) -> int:
    import orjson

    from rtml import infra

    if args.action == "up":
        endpoints = infra.up(settings)
        print(f"KAFKA_BOOTSTRAP_SERVERS={endpoints.bootstrap_servers}")
        print(f"REDIS_URL={endpoints.redis_url}")
    elif args.action == "down":
        infra.down(settings)
    else:
        print(orjson.dumps(infra.status(settings), option=orjson.OPT_INDENT_2, default=str).decode())
    return 0


def _models(settings: Settings, args: argparse.Namespace) -> int:
    from runtime.registry import ModelRegistry

    registry = ModelRegistry(settings.registry.root)
    if args.action == "train-demo":
        from importers.extras import missing_extra

        if missing := missing_extra("rtml models train-demo", "sklearn", "skl2onnx"):
            print(missing.message, file=sys.stderr)
            return 2
        from importers.demo_models import train_demo_models

        for metadata in train_demo_models(registry, force=args.force):
            print(f"{metadata.name} v{metadata.version}: {metadata.metrics}")
    elif args.action == "list":
        return _models_list(settings, args)
    elif args.action == "import":
        from importers.cli import run_import
        from rtml.lifecycle_cli import publish_registration

        code = run_import(registry, args)
        if code == 0 and getattr(args, "registered_version", None):
            code = publish_registration(settings, args.import_name, args.registered_version, args.promote)
        return code
    elif args.action in LIFECYCLE_ACTIONS:
        from rtml.lifecycle_cli import run_lifecycle

        return run_lifecycle(settings, args)
    else:
        if not args.name:
            print("rtml models show NAME", file=sys.stderr)
            return 2
        print(registry.metadata(args.name, registry.latest(args.name)).model_dump_json(indent=2))
    return 0


def _models_list(settings: Settings, args: argparse.Namespace) -> int:
    """The local registry (the gateway's ``/api/v1/models`` shape with ``--json``), or with
    ``--url`` what a running gateway serves, asked through the client SDK."""
    if args.url:
        from rtml_client.cli import main as client_main

        code: int = client_main(["models", "list", "--url", args.url, *(["--json"] if args.json else [])])
        return code
    import json

    from runtime.registry import ModelRegistry

    registry = ModelRegistry(settings.registry.root)
    rows: list[dict[str, object]] = []
    for name in registry.list_models():
        versions, latest = registry.versions(name), registry.metadata(name, registry.latest(name))
        if not args.json:
            print(f"{name}\tversions: {', '.join(versions)}")
        brief = {"name": name, "latest_version": latest.version, "versions": versions, "task": latest.task}
        rows.append({**brief, "n_features": latest.n_features})
    if args.json:
        print(json.dumps(rows))
    return 0


def _client(_settings: Settings, args: argparse.Namespace) -> int:
    if not hasattr(args, "client_command"):
        print(f"rtml {args.command} needs the client SDK: pip install ./client", file=sys.stderr)
        return 2
    from rtml_client.cli import run

    code: int = run(args)
    return code


def _topics(settings: Settings, _args: argparse.Namespace) -> int:
    from runtime.kafka import ensure_topics, topic_table
    from runtime.registry import ModelRegistry

    table = topic_table(settings, ModelRegistry(settings.registry.root).list_models())
    ensure_topics(settings.kafka, [spec for spec in table if spec.created_by == "rtml"])
    return 0


def _schemas(_settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from schemas.export import EXPORT_DIR, checkout_export_dir, export_json_schemas, render_all

    if args.check:
        directory = Path(args.out) if args.out not in (None, "-") else EXPORT_DIR
        stale = export_json_schemas(check=True, directory=directory)
        if stale:
            print(f"stale JSON Schema export in {directory}: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    out = args.out or checkout_export_dir() or "-"
    if out == "-":
        sys.stdout.buffer.write(render_all())
        return 0
    export_json_schemas(directory=Path(out))
    return 0


def _cache(settings: Settings, args: argparse.Namespace) -> int:
    """``rtml cache invalidate NAME [VERSION]``: the model must be registered (a typo would
    otherwise report 0 keys dropped and look like success)."""
    import asyncio

    from redis import asyncio as aioredis

    from runtime.cache_admin import invalidate
    from runtime.registry import ModelRegistry

    registry = ModelRegistry(settings.registry.root)
    known = registry.list_models()
    if args.model not in known:
        print(f"no model '{args.model}'; registered: {', '.join(known) or 'none'}", file=sys.stderr)
        return 1
    versions = registry.versions(args.model)
    if args.version is not None and args.version not in versions:
        print(
            f"model '{args.model}' has no version '{args.version}'; versions: {', '.join(versions)}",
            file=sys.stderr,
        )
        return 1

    async def run() -> int:
        client = aioredis.Redis.from_url(settings.redis.url.get_secret_value())
        try:
            return await invalidate(client, settings.redis.key_prefix, args.model, args.version)
        finally:
            await client.aclose()

    deleted = asyncio.run(run())
    which = f"{args.model} v{args.version}" if args.version else f"{args.model} (every version)"
    print(f"dropped {deleted} cached predictions of {which}")
    return 0


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from rtml.keys_cli import run

    return run(settings, args)


def _drift(settings: Settings, args: argparse.Namespace) -> int:
    """``rtml drift`` (the Faust app) and ``rtml alerts tail|forward`` (its subscribers)."""
    from drift.main import run_alert_subscriber, run_detector

    if args.command == "drift":
        return run_detector(settings, args)
    return run_alert_subscriber(settings, args)


_HANDLERS = {
    "run": _run,
    "gateway": _gateway,
    "worker": _worker,
    "infra": _infra,
    "models": _models,
    "topics": _topics,
    "cache": _cache,
    "keys": _keys,
    "schemas": _schemas,
    "predict": _client,
    "bench": _client,
    "drift": _drift,
    "alerts": _drift,
}

if __name__ == "__main__":
    sys.exit(main())
