"""The ``rtml`` command line: every component starts on its own from here.

rtml run                         whole stack with demo models (make run)
rtml gateway                     HTTP gateway
rtml worker --model NAME|all     a worker process (repeat --model to host several)
rtml infra up|down|status        local Kafka (KRaft) and Redis on 127.0.0.1
rtml models train-demo|list|show the model registry
rtml topics ensure               create request/log/dead-letter topics
rtml schemas export [--check]    JSON Schema files for non-Python producers
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rtml.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtml", description="Real-time ML model serving over Kafka.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start Kafka, Redis, demo models, two workers and the gateway")
    commands.add_parser("gateway", help="run the HTTP gateway")
    worker = commands.add_parser("worker", help="run a worker process")
    worker.add_argument("--model", action="append", required=True, help="model name, or 'all'; repeatable")
    worker.add_argument("--max-messages", type=int, default=None, help="stop after this many messages")
    worker.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    infra = commands.add_parser("infra", help="local Kafka and Redis")
    infra.add_argument("action", choices=["up", "down", "status"])
    models = commands.add_parser("models", help="model registry")
    models.add_argument("action", choices=["train-demo", "list", "show"])
    models.add_argument("name", nargs="?")
    models.add_argument("--force", action="store_true", help="train-demo: retrain even if registered")
    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_argument("action", choices=["ensure"])
    schemas = commands.add_parser("schemas", help="message schemas")
    schemas.add_argument("action", choices=["export"])
    schemas.add_argument("--check", action="store_true", help="fail if the committed export is stale")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    from rtml.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json, process=args.command)
    handler = _HANDLERS[args.command]
    return handler(settings, args)


def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from rtml.run import run_stack

    return run_stack(settings)


def _gateway(settings: Settings, _args: argparse.Namespace) -> int:
    from gateway.main import run_gateway

    run_gateway(settings)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from workers.loop import RunLimits, run_worker_process

    run_worker_process(settings, args.model, RunLimits(args.max_messages, args.idle_timeout))
    return 0


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
    from rtml.registry import ModelRegistry

    registry = ModelRegistry(settings.registry.root)
    if args.action == "train-demo":
        from rtml.demo_models import train_demo_models

        for metadata in train_demo_models(registry, force=args.force):
            print(f"{metadata.name} v{metadata.version}: {metadata.metrics}")
    elif args.action == "list":
        for name in registry.list_models():
            print(f"{name}\tversions: {', '.join(registry.versions(name))}")
    else:
        if not args.name:
            print("rtml models show NAME", file=sys.stderr)
            return 2
        print(registry.metadata(args.name, registry.latest(args.name)).model_dump_json(indent=2))
    return 0


def _topics(settings: Settings, _args: argparse.Namespace) -> int:
    from rtml.registry import ModelRegistry
    from workers.loop import ensure_request_topics

    ensure_request_topics(settings, ModelRegistry(settings.registry.root).list_models())
    return 0


def _schemas(_settings: Settings, args: argparse.Namespace) -> int:
    from schemas.export import export_json_schemas

    stale = export_json_schemas(check=args.check)
    if stale:
        print(f"stale JSON Schema export: {', '.join(stale)}; run `rtml schemas export`", file=sys.stderr)
        return 1
    return 0


_HANDLERS = {
    "run": _run,
    "gateway": _gateway,
    "worker": _worker,
    "infra": _infra,
    "models": _models,
    "topics": _topics,
    "schemas": _schemas,
}

if __name__ == "__main__":
    sys.exit(main())
