"""``rtml keys create NAME --scopes predict,read [--rate R] | list | revoke NAME``.

The key is printed once, by ``create``; Redis keeps only its SHA-256. Every gateway reloads the
table every two seconds (runtime/api_keys.py), so a new or revoked key takes effect everywhere
within that. No key or hash is ever printed by ``list`` or logged.
"""

from __future__ import annotations

import argparse
import sys

from runtime.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create", "list", "revoke"])
    parser.add_argument("name", nargs="?", help="create, revoke: the key's name (who uses it)")
    parser.add_argument("--scopes", default="predict", help="comma-separated: predict, read, admin")
    parser.add_argument("--rate", type=float, help="requests per second this key may make (no limit)")
    parser.add_argument("--json", action="store_true", help="list: JSON for scripts")


def run(settings: Settings, args: argparse.Namespace) -> int:
    import orjson
    import redis

    from runtime import api_keys
    from runtime.errors import InvalidInput

    client = redis.Redis.from_url(settings.redis.url.get_secret_value(), socket_timeout=5)
    table = api_keys.table_key(settings.redis.keys_prefix)
    try:
        if args.action == "list":
            records = api_keys.decode_table(client.hgetall(table))  # type: ignore[arg-type]
            rows = [r.model_dump(exclude={"sha256"}) for r in sorted(records.values(), key=lambda r: r.name)]
            if args.json:
                print(orjson.dumps(rows).decode())
            for row in [] if args.json else rows:
                rate = f"{row['rate']:g}/s" if row["rate"] else "unlimited"
                print(f"{row['name']}\tscopes: {','.join(row['scopes'])}\trate: {rate}")
            return 0
        if not args.name:
            print(f"usage: rtml keys {args.action} NAME", file=sys.stderr)
            return 2
        if args.action == "revoke":
            if not client.hdel(table, args.name):
                print(f"error: no key named '{args.name}'", file=sys.stderr)
                return 1
            print(f"revoked '{args.name}': every gateway refuses it within 2 s")
            return 0
        key, record = api_keys.new_key(args.name, api_keys.parse_scopes(args.scopes), args.rate)
        if not client.hsetnx(table, args.name, api_keys.encode(record)):
            print(f"error: a key named '{args.name}' exists; revoke it first", file=sys.stderr)
            return 1
    except InvalidInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"error: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(key)
    print(
        f"(key '{record.name}', scopes {','.join(record.scopes)}: shown once, only its hash is stored)",
        file=sys.stderr,
    )
    return 0
