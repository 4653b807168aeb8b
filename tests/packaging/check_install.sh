#!/usr/bin/env bash
# `make package-check`: what `pip install ./client .` gives a user, outside the checkout.
#
# Builds the wheels of both distributions (rtml-client, rtml) from the working tree, installs
# them into a fresh virtualenv under a temp dir with a real dependency resolution (pip's cache
# makes repeats fast), then, from a directory outside the checkout with a clean environment
# (no RTML_*, no config file, a private HOME), imports every module and runs every command
# that needs no broker. Fails on the first problem; removes everything it made.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3.11}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rtml-package-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

log() { printf '==> [%3d s] %s\n' "$((SECONDS - START))" "$*"; }
fail() { printf 'package-check FAILED: %s\n' "$*" >&2; exit 1; }

# The working tree as git sees it (tracked and new files, nothing ignored: no .venv, models/,
# .cache/, egg-info), so the build never writes into the checkout.
log "copying the working tree to $WORK/src"
mkdir -p "$WORK/src"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) \
    | tar -xf - -C "$WORK/src"

log "fresh virtualenv ($PYTHON)"
"$PYTHON" -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/python" -m pip --disable-pip-version-check -q)

log "building wheels"
"${PIP[@]}" wheel --no-deps -w "$WORK/dist" "$WORK/src/client" "$WORK/src"
ls "$WORK/dist"

log "installing both wheels (dependencies resolved from the index)"
"${PIP[@]}" install "$WORK"/dist/rtml_client-*.whl "$WORK"/dist/rtml-*.whl

# Outside the checkout, with nothing of the developer's environment that rtml reads.
mkdir -p "$WORK/cwd" "$WORK/home"
cd "$WORK/cwd"
read -r KAFKA_PORT CONTROLLER_PORT REDIS_PORT < <("$WORK/venv/bin/python" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
CLEAN_ENV=(env -i "PATH=$WORK/venv/bin:/usr/bin:/bin" "HOME=$WORK/home" "LANG=C.UTF-8" "TMPDIR=$WORK"
    "RTML_INFRA__KAFKA_PORT=$KAFKA_PORT" "RTML_INFRA__KAFKA_CONTROLLER_PORT=$CONTROLLER_PORT"
    "RTML_INFRA__REDIS_PORT=$REDIS_PORT")
run() { "${CLEAN_ENV[@]}" "$@"; }

log "every module imports from site-packages; defaults outside it; the Kafka pom ships"
run python - <<'EOF'
import importlib, pkgutil, sys, sysconfig
from pathlib import Path

site = Path(sysconfig.get_paths()["purelib"]).resolve()
# Modules that need an extra (rtml[train], rtml[tracing]) by design; every other import must be declared.
NEEDS_EXTRA = {"importers.demo_models": {"sklearn", "skl2onnx"}, "runtime.tracing_otel": {"opentelemetry"}}
failures = []
for package in ("rtml", "runtime", "importers", "gateway", "workers", "drift", "schemas", "rtml_client"):
    root = importlib.import_module(package)
    assert Path(root.__file__).resolve().is_relative_to(site), f"{package} imported from {root.__file__}"
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top not in NEEDS_EXTRA.get(info.name, set()):
                failures.append(f"{info.name}: {exc}")
if failures:
    sys.exit("undeclared imports:\n  " + "\n  ".join(failures))

from rtml.infra.kafka import POM_FILE
from runtime.settings import load_settings

assert POM_FILE.is_file() and POM_FILE.resolve().is_relative_to(site), POM_FILE
settings = load_settings()
home = Path.home()
expected = {
    "registry.root": (settings.registry.root, home / ".local/share/rtml/models"),
    "infra.state_dir": (settings.infra.state_dir, home / ".local/state/rtml"),
    "infra.cache_dir": (settings.infra.cache_dir, home / ".cache/rtml"),
}
for key, (actual, wanted) in expected.items():
    assert not actual.resolve().is_relative_to(site), f"{key} defaults into site-packages: {actual}"
    assert actual == wanted, f"{key} is {actual}; expected {wanted}"
print(f"ok: imports, pom at {POM_FILE}, defaults under {home}")
EOF

log "each command's --help"
commands=$(run rtml --help | sed -n 's/^ *{\([a-z,-]*\)}.*/\1/p' | head -1 | tr ',' ' ')
[[ -n "$commands" ]] || fail "no subcommands in rtml --help"
for command in $commands; do
    run rtml "$command" --help >/dev/null || fail "rtml $command --help"
done
echo "ok: $commands"

log "rtml schemas export"
run rtml schemas export --check || fail "the shipped JSON Schema files are stale"
run rtml schemas export | run python -c 'import json, sys; assert len(json.load(sys.stdin)) >= 5'
run rtml schemas export --out "$WORK/schemas"
run rtml schemas export --check --out "$WORK/schemas"
ls "$WORK/schemas" | grep -q '\.schema\.json$' || fail "rtml schemas export --out wrote nothing"
echo "ok"

log "rtml models list (empty registry), rtml infra status, rtml models train-demo without [train]"
[[ "$(run rtml models list --json)" == "[]" ]] || fail "rtml models list --json"
run rtml models list
run rtml infra status | run python -c 'import json, sys; assert set(json.load(sys.stdin)) == {"kafka", "redis"}'
if output=$(run rtml models train-demo 2>&1); then
    fail "rtml models train-demo succeeded without scikit-learn installed?"
fi
grep -q "pip install 'rtml\[train\]'" <<<"$output" || fail "train-demo without [train]: $output"
if output=$(run env RTML_TRACING__ENABLED=true rtml models list 2>&1); then
    fail "tracing.enabled was accepted without OpenTelemetry's SDK installed?"
fi
grep -q "pip install 'rtml\[tracing\]'" <<<"$output" || fail "tracing without [tracing]: $output"
echo "ok"

log "unknown settings are refused by name"
if output=$(run env RTML_GATWAY__PORT=1 rtml models list 2>&1); then
    fail "RTML_GATWAY__PORT was accepted"
fi
grep -q "RTML_GATWAY__PORT" <<<"$output" || fail "unnamed: $output"
echo "ok"

[[ -z "$(ls -A "$WORK/home/.local/share/rtml/models" 2>/dev/null)" ]] || fail "a command wrote models"
log "package-check passed in $((SECONDS - START)) s"
