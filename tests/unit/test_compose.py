"""Static checks of the Docker Compose stack (compose/docker-compose.yml, compose/Dockerfile).

No Docker engine is needed: the compose file is validated against the vendored Compose
Specification JSON Schema (tests/data/README.md says where it comes from), and its wiring is
checked against rtml's settings and the Kafka broker's own listener configuration.
``docker compose config`` (a subprocess) runs in tests/integration/test_compose_cli.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, SecretStr

ROOT = Path(__file__).resolve().parents[2]
try:
    from runtime.settings import Settings
except ModuleNotFoundError:  # a checkout where rtml is not pip-installed (no `pip install -e .`)
    sys.path.insert(0, str(ROOT))
    from runtime.settings import Settings

COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"
DOCKERFILE = ROOT / "compose" / "Dockerfile"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
RTML_SERVICES = ("gateway", "worker")
# Read by runtime.settings itself (which YAML file to load), not a Settings field.
RTML_NON_FIELD_VARS = {"RTML_CONFIG"}
REDIS_DEFAULT_PORT = 6379

Service = dict[str, Any]


# ---------------------------------------------------------------- helpers


def _load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Service]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _environment(service: Service) -> dict[str, str]:
    """A service's environment as strings, from either the mapping or the list form."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in raw)
        return {key: value for key, value in pairs}
    return {key: _as_env_string(value) for key, value in raw.items()}


def _as_env_string(value: Any) -> str:
    """What a container sees for a YAML scalar (compose spells booleans in lower case)."""
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _published_ports(service: Service) -> list[tuple[str | None, int]]:
    """(host_ip, container port) of each published port; short and long syntax."""
    result: list[tuple[str | None, int]] = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result.append((entry.get("host_ip"), int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        parts = spec.rsplit(":", 2)
        host_ip = parts[0] if len(parts) == 3 else None
        result.append((host_ip, int(parts[-1])))
    return result


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """Parse Kafka's ``NAME://host:port,...`` into {NAME: (host, port)}."""
    result: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, address = item.split("://", 1)
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def _depends_on(service: Service) -> list[str]:
    targets = service.get("depends_on") or []
    return list(targets)  # list form, or the keys of the mapping form


def _field_model(model: type[BaseModel], path: list[str]) -> str | None:
    """Walk ``path`` through nested pydantic models; return an error message or None."""
    current: type[BaseModel] = model
    for depth, name in enumerate(path):
        field = current.model_fields.get(name)
        if field is None:
            return f"{current.__name__} has no field {name!r} (known: {sorted(current.model_fields)})"
        annotation = field.annotation
        is_last = depth == len(path) - 1
        if is_last:
            return None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return f"{current.__name__}.{name} is not a section; cannot hold {path[depth + 1]!r}"
        current = annotation
    return "empty variable name"


def _env_path(variable: str) -> list[str]:
    """``RTML_KAFKA__BOOTSTRAP_SERVERS`` -> ``["kafka", "bootstrap_servers"]``."""
    return variable.removeprefix("RTML_").lower().split("__")


def _settings_value(settings: Settings, path: list[str]) -> str:
    value: Any = settings
    for name in path:
        value = getattr(value, name)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return _as_env_string(value)


def _rtml_vars(services: dict[str, Service]) -> dict[str, dict[str, str]]:
    return {
        name: {key: value for key, value in _environment(service).items() if key.startswith("RTML_")}
        for name, service in services.items()
    }


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result: list[tuple[str, str]] = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1] :]


def _exec_form(arguments: str) -> list[str]:
    if arguments.startswith("["):
        parsed = json.loads(arguments)
        assert isinstance(parsed, list)
        return [str(item) for item in parsed]
    return shlex.split(arguments)


# ------------------------------------------------------- schema validation


def test_vendored_schema_is_the_recorded_one() -> None:
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256, "tests/data/compose-spec.json changed; see tests/data/README.md"


def _validator() -> Any:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def test_compose_file_matches_compose_specification(compose: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(compose), key=lambda error: list(error.absolute_path))
    messages = [f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}" for error in errors]
    assert not messages, "compose/docker-compose.yml breaks the Compose Specification:\n" + "\n".join(
        messages
    )


def test_schema_rejects_what_compose_would_reject(compose: dict[str, Any]) -> None:
    """Guard against a validator that accepts anything (wrong draft, empty schema)."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["imagee"] = "typo"
    broken["services"]["worker"]["depends_on"]["kafka"]["condition"] = "service_healty"
    broken["services"]["worker"]["deploy"]["replicas"] = [2]
    paths = {"/".join(map(str, error.absolute_path)) for error in _validator().iter_errors(broken)}
    assert "services/gateway" in paths
    assert "services/worker/depends_on" in paths  # reported at the oneOf of its two forms
    assert "services/worker/deploy/replicas" in paths


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the top-level `version` key is obsolete in the Compose Specification"


# ------------------------------------------------------------- services


def test_expected_services(services: dict[str, Service]) -> None:
    assert {"kafka", "redis", "gateway", "worker"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["gateway"]["command"] == ["gateway"]
    assert services["worker"]["command"] == ["worker", "--model", "all"]
    assert services["worker"]["deploy"]["replicas"] == 2


def test_rtml_services_build_the_dockerfile(services: dict[str, Service]) -> None:
    for name in RTML_SERVICES:
        build = services[name]["build"]
        dockerfile = (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile == DOCKERFILE, f"{name} builds {dockerfile}, expected {DOCKERFILE}"


def test_every_depends_on_target_exists(services: dict[str, Service]) -> None:
    for name, service in services.items():
        for target in _depends_on(service):
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert target != name, f"{name} depends on itself"
        conditions = service.get("depends_on")
        if isinstance(conditions, dict):
            for target, spec in conditions.items():
                if spec.get("condition") == "service_healthy":
                    assert "healthcheck" in services[target], f"{name} waits for {target}'s healthcheck"


def test_rtml_services_wait_for_healthy_kafka_and_redis(services: dict[str, Service]) -> None:
    for name in RTML_SERVICES:
        conditions = services[name]["depends_on"]
        for target in ("kafka", "redis"):
            assert conditions[target]["condition"] == "service_healthy", f"{name} -> {target}"


# ------------------------------------------------- settings wiring


def test_every_rtml_variable_is_a_settings_field(services: dict[str, Service]) -> None:
    problems = [
        f"{service}: {variable}: {error}"
        for service, variables in _rtml_vars(services).items()
        for variable in variables
        if variable not in RTML_NON_FIELD_VARS
        and (error := _field_model(Settings, _env_path(variable))) is not None
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("service_name", RTML_SERVICES)
def test_settings_read_what_compose_sets(
    services: dict[str, Service], service_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build real Settings from the service's environment: every value must arrive unchanged."""
    variables = _rtml_vars(services)[service_name]
    assert variables, f"{service_name} sets no RTML_* variable"
    for key in list(os.environ):
        if key.startswith("RTML_") or key in {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}:
            monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    for key, value in variables.items():
        if key not in RTML_NON_FIELD_VARS:
            assert _settings_value(settings, _env_path(key)) == value, key


def test_dockerfile_rtml_variables_are_settings_fields() -> None:
    problems: list[str] = []
    for keyword, arguments in _dockerfile_instructions():
        if keyword != "ENV":
            continue
        for token in shlex.split(arguments):
            variable = token.split("=", 1)[0]
            if variable.startswith("RTML_") and variable not in RTML_NON_FIELD_VARS:
                error = _field_model(Settings, _env_path(variable))
                if error is not None:
                    problems.append(f"{variable}: {error}")
    assert not problems, "\n".join(problems)


def test_gateway_publishes_the_port_it_listens_on(services: dict[str, Service]) -> None:
    gateway = services["gateway"]
    environment = _environment(gateway)
    port = int(environment["RTML_GATEWAY__PORT"])
    assert environment["RTML_GATEWAY__HOST"] == "0.0.0.0", "bind all interfaces inside the container"
    assert port in [target for _, target in _published_ports(gateway)]
    assert f":{port}/ready" in " ".join(gateway["healthcheck"]["test"])


def test_worker_metrics_port_is_exposed_and_probed(services: dict[str, Service]) -> None:
    worker = services["worker"]
    port = _environment(worker)["RTML_WORKER__METRICS_PORT"]
    assert port in [str(item) for item in worker.get("expose", [])]
    assert f":{port}/" in " ".join(worker["healthcheck"]["test"])


# ---------------------------------------------------------------- Kafka


def _kafka_env(services: dict[str, Service]) -> dict[str, str]:
    return _environment(services["kafka"])


def test_kafka_is_a_single_kraft_node(services: dict[str, Service]) -> None:
    env = _kafka_env(services)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[key] == "1", key
    assert "kafka-broker-api-versions.sh" in " ".join(services["kafka"]["healthcheck"]["test"])


def test_kafka_listener_configuration_is_consistent(services: dict[str, Service]) -> None:
    env = _kafka_env(services)
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    assert set(advertised) <= set(listeners), "advertised listeners must be real listeners"
    assert controller in listeners and controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    for name, (_, port) in advertised.items():
        assert listeners[name][1] == port, f"{name} is advertised on {port}, listens on {listeners[name][1]}"
    node_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == env["KAFKA_NODE_ID"]
    voter_host, _, voter_port = voter.rpartition(":")
    assert voter_host == "kafka" and int(voter_port) == listeners[controller][1]


def test_bootstrap_servers_name_the_kafka_service_and_a_listener(services: dict[str, Service]) -> None:
    advertised = _listeners(_kafka_env(services)["KAFKA_ADVERTISED_LISTENERS"])
    in_network = {(host, port) for host, port in advertised.values() if host == "kafka"}
    for name in RTML_SERVICES:
        bootstrap = _environment(services[name])["RTML_KAFKA__BOOTSTRAP_SERVERS"]
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            assert host == "kafka", f"{name}: bootstrap host {host!r} is not the kafka service"
            assert (host, int(port)) in in_network, f"{name}: kafka advertises no listener on {server}"


def test_kafka_external_listener_is_published_on_its_port(services: dict[str, Service]) -> None:
    env = _kafka_env(services)
    external_host, external_port = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])["EXTERNAL"]
    published = _published_ports(services["kafka"])
    assert external_port in [target for _, target in published]
    assert _listeners(env["KAFKA_LISTENERS"])["EXTERNAL"][1] == external_port
    assert external_host in {"127.0.0.1", "localhost"}


# ---------------------------------------------------------------- Redis


def _redis_port(service: Service) -> int:
    command = service.get("command") or []
    argv = shlex.split(command) if isinstance(command, str) else [str(item) for item in command]
    if "--port" in argv:
        return int(argv[argv.index("--port") + 1])
    return REDIS_DEFAULT_PORT


def test_redis_url_names_the_redis_service_and_port(services: dict[str, Service]) -> None:
    port = _redis_port(services["redis"])
    for name in RTML_SERVICES:
        url = urlsplit(_environment(services[name])["RTML_REDIS__URL"])
        assert url.scheme == "redis"
        assert url.hostname == "redis", f"{name}: redis host {url.hostname!r} is not the redis service"
        assert (url.port or REDIS_DEFAULT_PORT) == port, (
            f"{name}: redis listens on {port}, URL says {url.port}"
        )
    assert "ping" in services["redis"]["healthcheck"]["test"]


# ----------------------------------------------------------- Dockerfile


def test_dockerfile_entrypoint_is_the_rtml_console_script() -> None:
    assert DOCKERFILE.is_file()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    final = _final_stage(_dockerfile_instructions())
    entrypoints = [_exec_form(arguments) for keyword, arguments in final if keyword == "ENTRYPOINT"]
    assert entrypoints, "final stage has no ENTRYPOINT"
    assert entrypoints[-1][0] in scripts, (
        f"{entrypoints[-1][0]!r} is not in [project.scripts] {sorted(scripts)}"
    )
    assert entrypoints[-1][0] == "rtml"


def test_dockerfile_trains_demo_models_and_runs_unprivileged() -> None:
    instructions = _dockerfile_instructions()
    base_images = [arguments for keyword, arguments in instructions if keyword in {"FROM", "ARG"}]
    assert any("python:3.11-slim" in item for item in base_images)
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert "rtml models train-demo" in runs
    assert re.search(r"pip install \"?\.\[train\]", runs), "the training stage installs .[train]"
    users = [arguments for keyword, arguments in _final_stage(instructions) if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "final stage must not run as root"


def test_dockerfile_copies_every_package_the_wheel_is_built_from() -> None:
    """A package missing from the build context builds an image whose `rtml` fails on import."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {
        arguments.split()[0]
        for keyword, arguments in _dockerfile_instructions()
        if keyword == "COPY" and not arguments.startswith("--from")
    }
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
