"""Static checks of the Docker Compose stack (compose/docker-compose.yml, compose/Dockerfile,
compose/prometheus.yml).

No Docker engine is needed: the compose file is validated against the vendored Compose
Specification JSON Schema (tests/data/README.md says where it comes from), and its wiring is
checked against rtml's settings, the Kafka broker's own listener configuration and the deploy/
files it mounts into Prometheus, Alertmanager and Grafana. Every service has a health check, a
pinned image (or a build from a pinned base) and CPU and memory limits.
``docker compose config`` (a subprocess) runs in tests/integration/test_compose_cli.py;
``promtool check config`` and ``amtool check-config`` on what the stack mounts run in
tests/integration/test_alert_rules.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, SecretStr

ROOT = Path(__file__).resolve().parents[2]
try:
    from runtime.kafka.clients import drain_timeout_s
    from runtime.kafka.profiles import DURABLE_PRODUCER, REPLY_PRODUCER
    from runtime.settings import Settings, load_settings
except ModuleNotFoundError:  # a checkout where rtml is not pip-installed (no `pip install -e .`)
    sys.path.insert(0, str(ROOT))
    from runtime.kafka.clients import drain_timeout_s
    from runtime.kafka.profiles import DURABLE_PRODUCER, REPLY_PRODUCER
    from runtime.settings import Settings, load_settings

COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
COMPOSE_PROMETHEUS = COMPOSE_DIR / "prometheus.yml"
DEPLOY = ROOT / "deploy"
DEPLOY_PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
RULES = DEPLOY / "prometheus" / "rules" / "rtml.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "rtml.json"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
RTML_SERVICES = ("gateway", "worker", "drift")
# Read by runtime.settings itself (which YAML file to load), not a Settings field.
RTML_NON_FIELD_VARS = {"RTML_CONFIG"}
REDIS_DEFAULT_PORT = 6379
IMAGE_CONFIG_DIR = "/app/config"  # where compose/Dockerfile copies config/
# An exact release: 1.2.3, v1.2.3, 1.2.3-alpine, 3.11.13-slim-bookworm.
EXACT_TAG = re.compile(r"v?\d+\.\d+\.\d+(?:-[0-9A-Za-z][0-9A-Za-z._-]*)?")
NAMED_VOLUME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a volume name, not a path
# What each image's health check runs: tools the image ships (prom's busybox has wget, no curl).
HEALTHCHECK_TOOLS = {
    "apache/kafka": "/opt/kafka/bin/kafka-broker-api-versions.sh",
    "redis": "redis-cli",
    "prom/prometheus": "wget",
    "prom/alertmanager": "wget",
    "grafana/grafana": "wget",
}
RTML_HEALTHCHECK_TOOL = "python"  # the rtml image (python:3.11-slim) has neither curl nor wget
# The Prometheus job of each rtml role (command[0]): the job names the alert rules match.
METRICS_JOBS = {"gateway": "rtml-gateway", "worker": "rtml-worker", "drift": "rtml-drift"}

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


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference; a registry's ``host:port`` is no tag."""
    name, _, digest = image.partition("@")
    head, _, last = name.rpartition("/")
    last_name, _, tag = last.partition(":")
    return (f"{head}/{last_name}" if head else last_name), tag or None, digest or None


def _is_pinned(image: str) -> bool:
    """An exact release (``1.2.3``, ``v1.2.3``, ``1.2.3-alpine``) or a digest: never ``latest``,
    ``7`` or ``7-alpine``, whose content changes under the same name."""
    _, tag, digest = _split_image(image)
    if digest is not None:
        return re.fullmatch(r"sha256:[0-9a-f]{64}", digest) is not None
    return tag is not None and EXACT_TAG.fullmatch(tag) is not None


def _healthcheck_argv(service: Service) -> list[str]:
    """The program and arguments a health check runs (``CMD`` and ``CMD-SHELL`` forms)."""
    test = service["healthcheck"]["test"]
    if isinstance(test, str):  # the string form is CMD-SHELL
        return shlex.split(test)
    kind, *rest = (str(item) for item in test)
    if kind == "CMD-SHELL":
        return shlex.split(" ".join(rest))
    assert kind == "CMD", f"health check form {kind!r}"
    return rest


def _container_ports(service: Service) -> set[int]:
    """Ports the service publishes or exposes to the compose network."""
    exposed = {int(str(item).split("/", 1)[0]) for item in service.get("expose") or []}
    return exposed | {target for _, target in _published_ports(service)}


def _limits(service: Service) -> dict[str, Any]:
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    assert isinstance(limits, dict)
    return limits


def _bytes(value: str | int) -> int:
    """Docker's (and Redis's ``mb``) byte sizes: ``512M``, ``1G``, ``192mb``, binary multiples."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(value).strip().lower())
    assert match, f"not a byte size: {value!r}"
    return int(float(match.group(1)) * 1024 ** "_kmg".index(match.group(2) or "_"))


def _seconds(duration: str | int) -> float:
    """A compose duration (``1m30s``, ``75s``, ``500ms``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(duration))
    assert parts and "".join(a + b for a, b in parts) == str(duration), f"not a duration: {duration!r}"
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(amount) * scale[unit] for amount, unit in parts)


def _bind_mounts(service: Service) -> dict[str, tuple[Path, bool]]:
    """{container path: (host path, read-only)} of the service's bind mounts, short and long
    syntax; a relative host path resolves against the compose file's directory, as compose does."""
    mounts: dict[str, tuple[Path, bool]] = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            if entry.get("type") != "bind":
                continue
            source, target, read_only = (
                str(entry["source"]),
                str(entry["target"]),
                bool(entry.get("read_only")),
            )
        else:
            source, target, *mode = str(entry).split(":")
            if NAMED_VOLUME.fullmatch(source):
                continue
            read_only = bool(mode) and "ro" in mode[0].split(",")
        mounts[posixpath.normpath(target)] = ((COMPOSE_DIR / source).resolve(), read_only)
    return mounts


def _host_path(service: Service, container_path: str) -> Path | None:
    """The checkout's file behind a path inside the container (the deepest bind mount wins)."""
    path = PurePosixPath(posixpath.normpath(container_path))
    found: tuple[PurePosixPath, Path] | None = None
    for target, (source, _) in _bind_mounts(service).items():
        mount = PurePosixPath(target)
        if (path == mount or mount in path.parents) and (
            found is None or len(mount.parts) > len(found[0].parts)
        ):
            found = (mount, source)
    if found is None:
        return None
    return found[1].joinpath(*path.relative_to(found[0]).parts)


def _flag(service: Service, name: str) -> str:
    """The value of ``--name=value`` in the service's command."""
    values = [
        str(arg).partition("=")[2] for arg in service.get("command") or [] if str(arg).startswith(f"{name}=")
    ]
    assert len(values) == 1, f"command sets {name}= {len(values)} times: {service.get('command')}"
    return values[0]


def _listen_port(service: Service) -> int:
    """The port of a Prometheus or Alertmanager ``--web.listen-address=[host]:port``."""
    return int(_flag(service, "--web.listen-address").rpartition(":")[2])


def _by_image(services: dict[str, Service], repository: str) -> tuple[str, Service]:
    found = [
        (name, s) for name, s in services.items() if _split_image(str(s.get("image", "")))[0] == repository
    ]
    assert len(found) == 1, f"expected one service running {repository}, found {[name for name, _ in found]}"
    return found[0]


def _image_rtml_env() -> dict[str, str]:
    """The RTML_* variables the final stage of the Dockerfile sets (``ENV``)."""
    env: dict[str, str] = {}
    for keyword, arguments in _final_stage(_dockerfile_instructions()):
        if keyword == "ENV":
            pairs = (token.split("=", 1) for token in shlex.split(arguments) if "=" in token)
            env.update((key, value) for key, value in pairs if key.startswith("RTML_"))
    return env


def _container_settings(service: Service, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What the rtml process in the container loads: the image's ENV (its RTML_CONFIG is the
    checkout's config/, copied to /app/config), overridden by the service's environment."""
    env = _image_rtml_env()
    image_config = PurePosixPath(env["RTML_CONFIG"])
    assert ("COPY", f"config {IMAGE_CONFIG_DIR}") in _dockerfile_instructions()
    env["RTML_CONFIG"] = str(ROOT / "config" / image_config.relative_to(IMAGE_CONFIG_DIR))
    env.update({key: value for key, value in _environment(service).items() if key.startswith("RTML_")})
    for key in list(os.environ):
        if key.startswith("RTML_") or key in {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()  # SettingsError names an unknown RTML_* variable or YAML key


def _scrape_targets(job: dict[str, Any]) -> set[str]:
    """``host:port`` of a scrape job's static targets and DNS-discovered names."""
    targets = {str(t) for config in job.get("static_configs") or [] for t in config.get("targets") or []}
    for config in job.get("dns_sd_configs") or []:
        targets.update(f"{name}:{config['port']}" for name in config["names"])
    return targets


def _metrics_endpoint(role: str, settings: Settings) -> tuple[str, int]:
    """(bind host, port) where an rtml process of this role serves /metrics."""
    endpoints = {
        "gateway": (settings.gateway.host, settings.gateway.port),
        "worker": (settings.worker.metrics_host, settings.worker.metrics_port),
        "drift": (settings.drift.metrics_host, settings.drift.metrics_port),
    }
    assert role in endpoints, (
        f"rtml {role}: does it export metrics? Add it here and to compose/prometheus.yml"
    )
    return endpoints[role]


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
    assert set(services) == {
        "kafka",
        "redis",
        "gateway",
        "worker",
        "drift",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert _split_image(services["redis"]["image"])[0] == "redis"
    assert services["gateway"]["command"] == ["gateway"]
    assert services["worker"]["command"] == ["worker", "--model", "all"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["drift"]["command"] == ["drift"]


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


@pytest.mark.parametrize(
    ("service_name", "variable"),
    [("worker", "RTML_WORKER__METRICS_PORT"), ("drift", "RTML_DRIFT__METRICS_PORT")],
)
def test_metrics_port_is_exposed_and_probed(
    services: dict[str, Service], service_name: str, variable: str
) -> None:
    service = services[service_name]
    port = _environment(service)[variable]
    assert port in [str(item) for item in service.get("expose", [])]
    assert f":{port}/" in " ".join(service["healthcheck"]["test"])


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
    argv = _healthcheck_argv(services["redis"])
    assert int(argv[argv.index("-p") + 1]) == port


def test_redis_memory_cap_stays_under_its_container_limit(services: dict[str, Service]) -> None:
    """Redis evicts (allkeys-lru) before the kernel kills it for the container's memory limit."""
    redis = services["redis"]
    argv = [str(item) for item in redis["command"]]
    assert argv[argv.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert _bytes(argv[argv.index("--maxmemory") + 1]) < _bytes(_limits(redis)["memory"])


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
    # Pinned to a patch release and a Debian release, as the compose build arg is.
    assert any(re.search(r"python:3\.11\.\d+-slim-bookworm", item) for item in base_images)
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


# ------------------------------------------------- health, images, limits


def test_every_service_has_a_health_check_run_by_its_own_image(services: dict[str, Service]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert {"interval", "timeout", "retries"} <= set(check), f"{name}: bound the health check"
        argv = _healthcheck_argv(service)
        assert argv and argv[0] != "NONE", f"{name}: health check disabled"
        if "build" in service:
            expected = RTML_HEALTHCHECK_TOOL
        else:
            repository = _split_image(service["image"])[0]
            assert repository in HEALTHCHECK_TOOLS, f"{name}: which tool of {repository} checks its health?"
            expected = HEALTHCHECK_TOOLS[repository]
        assert argv[0] == expected, f"{name}: health check runs {argv[0]!r}, the image has {expected!r}"


def test_health_checks_probe_a_port_the_service_serves(services: dict[str, Service]) -> None:
    probed = 0
    for name, service in services.items():
        for port in re.findall(
            r"https?://(?:127\.0\.0\.1|localhost):(\d+)/", " ".join(_healthcheck_argv(service))
        ):
            assert int(port) in _container_ports(service), (
                f"{name} probes :{port}, serves {_container_ports(service)}"
            )
            probed += 1
    assert probed >= 6  # gateway, worker, drift, prometheus, alertmanager, grafana


def test_health_checked_services_come_up_in_order(services: dict[str, Service]) -> None:
    """rtml waits for Kafka and Redis (checked above), Grafana for Prometheus, Prometheus for
    Alertmanager: each starts once what it needs answers its health check."""
    expected = {"prometheus": "alertmanager", "grafana": "prometheus"}
    for name, target in expected.items():
        assert services[name]["depends_on"][target]["condition"] == "service_healthy", f"{name} -> {target}"


def test_pinned_image_check_rejects_floating_tags() -> None:
    for image in (
        "redis:7.4.2-alpine",
        "prom/prometheus:v3.5.0",
        "localhost:5000/ml/rtml:0.1.0",
        "python:3.11.13-slim",
    ):
        assert _is_pinned(image), image
    assert _is_pinned("redis@sha256:" + "0" * 64)
    for image in (
        "redis",
        "redis:latest",
        "redis:7-alpine",
        "redis:7.4",
        "python:3.11-slim",
        "localhost:5000/rtml",
    ):
        assert not _is_pinned(image), image


def test_every_image_is_pinned_or_built_from_a_pinned_base(services: dict[str, Service]) -> None:
    declared = {
        arguments.split("=", 1)[0] for keyword, arguments in _dockerfile_instructions() if keyword == "ARG"
    }
    for name, service in services.items():
        image = str(service.get("image", ""))
        if "build" not in service:
            assert _is_pinned(image), f"{name}: pin {image!r} to an exact version"
            continue
        assert _split_image(image)[1] not in {None, "latest"}, f"{name}: tag the built image"
        args = service["build"].get("args") or {}
        base_images = {key: str(value) for key, value in args.items() if key.endswith("_IMAGE")}
        assert base_images, f"{name}: pin the Dockerfile's base image with a build arg"
        for key, value in base_images.items():
            assert key in declared, f"{name}: build arg {key} is no ARG of {DOCKERFILE.name}"
            assert _is_pinned(value), f"{name}: build arg {key}={value!r} floats"


def test_every_service_has_cpu_and_memory_limits(services: dict[str, Service]) -> None:
    for name, service in services.items():
        limits = _limits(service)
        assert float(limits.get("cpus", 0)) > 0, f"{name}: set deploy.resources.limits.cpus"
        assert _bytes(limits.get("memory", 0)) >= 64 * 2**20, f"{name}: set deploy.resources.limits.memory"


def test_kafka_memory_limit_holds_its_heap_and_the_health_check(services: dict[str, Service]) -> None:
    """kafka-server-start.sh's default heap is 1 GiB; the health check starts a 256 MiB tool JVM."""
    kafka = services["kafka"]
    assert "KAFKA_HEAP_OPTS" not in _environment(kafka)  # the image would also write it to server.properties
    assert _bytes(_limits(kafka)["memory"]) >= _bytes("1G") + _bytes("256M")


def test_rtml_services_stop_grace_outlasts_their_drain(
    services: dict[str, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL after stop_grace_period must not cut a drain short (deploy/README.md, Shutdown)."""
    gateway = _container_settings(services["gateway"], monkeypatch)
    gateway_drain = gateway.gateway.drain_seconds(gateway.env) + gateway.gateway.max_timeout_ms / 1000
    assert _seconds(services["gateway"]["stop_grace_period"]) > gateway_drain
    worker = _container_settings(services["worker"], monkeypatch)
    timeouts = [p.message_timeout_ms(worker.kafka) / 1000 for p in (DURABLE_PRODUCER, REPLY_PRODUCER)]
    assert _seconds(services["worker"]["stop_grace_period"]) > drain_timeout_s(*timeouts)
    assert _seconds(services["drift"]["stop_grace_period"]) >= 30


# ------------------------------------------------- monitoring: mounts


def test_every_bind_mount_is_a_read_only_file_of_the_checkout(services: dict[str, Service]) -> None:
    mounted: set[Path] = set()
    for name, service in services.items():
        for target, (source, read_only) in _bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert source.is_relative_to(ROOT), f"{name}: {source} is outside the checkout"
            assert read_only, f"{name}: mount {source} at {target} read-only (:ro)"
            mounted.add(source)
    expected = {
        DEPLOY / "prometheus" / "rules",
        ALERTMANAGER_CONFIG,
        DEPLOY / "grafana" / "provisioning" / "datasources",
        DEPLOY / "grafana" / "provisioning" / "dashboards",
        DASHBOARD.parent,
        COMPOSE_PROMETHEUS,
    }
    assert expected <= mounted, f"not mounted: {sorted(map(str, expected - mounted))}"


def test_compose_holds_no_copy_of_a_deploy_file() -> None:
    """deploy/ is the single source of the rules, routing, dashboard and provisioning."""
    deploy_files = {path.read_bytes(): path for path in DEPLOY.rglob("*") if path.is_file()}
    for path in COMPOSE_DIR.rglob("*"):
        if path.is_file():
            assert path.read_bytes() not in deploy_files, f"{path} copies {deploy_files[path.read_bytes()]}"


# ---------------------------------------------- monitoring: Prometheus


def test_compose_prometheus_reads_the_deploy_rule_files(services: dict[str, Service]) -> None:
    """The rule paths resolve to deploy/'s rule files both in the container (through its mounts)
    and on the host (where promtool checks compose/prometheus.yml)."""
    _, prometheus = _by_image(services, "prom/prometheus")
    config_in_container = _flag(prometheus, "--config.file")
    assert _host_path(prometheus, config_in_container) == COMPOSE_PROMETHEUS
    rule_files = [str(rule) for rule in _yaml(COMPOSE_PROMETHEUS)["rule_files"]]
    in_container = {
        _host_path(prometheus, posixpath.join(posixpath.dirname(config_in_container), r)) for r in rule_files
    }
    on_host = {(COMPOSE_PROMETHEUS.parent / rule).resolve() for rule in rule_files}
    deploy_rules = {
        (DEPLOY_PROMETHEUS.parent / rule).resolve() for rule in _yaml(DEPLOY_PROMETHEUS)["rule_files"]
    }
    assert in_container == on_host == deploy_rules
    assert all(path.is_file() for path in deploy_rules)


def test_compose_prometheus_serves_and_stores_where_compose_says(services: dict[str, Service]) -> None:
    _, prometheus = _by_image(services, "prom/prometheus")
    assert _listen_port(prometheus) in [target for _, target in _published_ports(prometheus)]
    assert f":{_listen_port(prometheus)}/-/ready" in " ".join(_healthcheck_argv(prometheus))
    storage = _flag(prometheus, "--storage.tsdb.path")
    assert any(str(v).split(":")[1:2] == [storage] for v in prometheus.get("volumes") or []), (
        "a volume for the TSDB"
    )


def test_compose_prometheus_has_the_deploy_jobs(services: dict[str, Service]) -> None:
    """The alert rules and the dashboard match on these job names."""
    compose_jobs = [job["job_name"] for job in _yaml(COMPOSE_PROMETHEUS)["scrape_configs"]]
    deploy_jobs = [job["job_name"] for job in _yaml(DEPLOY_PROMETHEUS)["scrape_configs"]]
    assert sorted(compose_jobs) == sorted(deploy_jobs) == sorted(METRICS_JOBS.values())
    for job in _yaml(COMPOSE_PROMETHEUS)["scrape_configs"]:
        for target in _scrape_targets(job):
            assert target.rpartition(":")[0] in services, f"{job['job_name']}: {target} is no compose service"


def test_compose_prometheus_scrapes_every_rtml_process(
    services: dict[str, Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = {job["job_name"]: job for job in _yaml(COMPOSE_PROMETHEUS)["scrape_configs"]}
    scraped = set()
    for name, service in services.items():
        if "build" not in service:
            continue
        role = str(service["command"][0])
        settings = _container_settings(service, monkeypatch)
        host, port = _metrics_endpoint(role, settings)
        assert port, f"{name} exports no metrics (set its metrics port)"
        assert host in {"0.0.0.0", "::"}, f"{name} serves metrics on {host}: unreachable from Prometheus"
        assert port in _container_ports(service), f"{name}: expose or publish :{port}"
        job = jobs[METRICS_JOBS[role]]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert f"{name}:{port}" in _scrape_targets(job), (
            f"job {job['job_name']} does not scrape {name}:{port}"
        )
        if (service.get("deploy") or {}).get("replicas", 1) > 1:  # a static target reaches one replica
            assert name in {n for c in job.get("dns_sd_configs") or [] for n in c["names"]}, name
        if role == "gateway":  # Prometheus sends no API key
            assert not settings.gateway.auth_required(settings.env), "compose gateway requires API keys"
        scraped.add(role)
    assert scraped == set(METRICS_JOBS)


def test_compose_prometheus_alerts_the_compose_alertmanager(services: dict[str, Service]) -> None:
    name, alertmanager = _by_image(services, "prom/alertmanager")
    port = _listen_port(alertmanager)
    alerting = _yaml(COMPOSE_PROMETHEUS)["alerting"]["alertmanagers"]
    targets = {
        str(t) for am in alerting for config in am.get("static_configs") or [] for t in config["targets"]
    }
    assert targets == {f"{name}:{port}"}
    assert port in [target for _, target in _published_ports(alertmanager)]
    assert _host_path(alertmanager, _flag(alertmanager, "--config.file")) == ALERTMANAGER_CONFIG


# ------------------------------------------------- monitoring: Grafana


def _grafana_provisioning(grafana: Service, kind: str) -> Path:
    root = _environment(grafana).get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")
    host = _host_path(grafana, f"{root}/{kind}")
    assert host is not None and host.is_dir(), f"grafana: {root}/{kind} is not mounted from the checkout"
    return host


def test_grafana_datasource_is_the_compose_prometheus(services: dict[str, Service]) -> None:
    _, grafana = _by_image(services, "grafana/grafana")
    env = _environment(grafana)
    directory = _grafana_provisioning(grafana, "datasources")
    assert directory == DEPLOY / "grafana" / "provisioning" / "datasources"
    sources = [s for path in sorted(directory.glob("*.y*ml")) for s in _yaml(path)["datasources"]]
    (prometheus_source,) = [s for s in sources if s["type"] == "prometheus"]

    def expand(match: re.Match[str]) -> str:  # Grafana expands $VAR and ${VAR} from its environment
        variable = match.group(1) or match.group(2)
        assert variable in env, f"grafana: the datasource reads ${variable}; set it in its environment"
        return env[variable]

    url = urlsplit(re.sub(r"\$\{(\w+)\}|\$(\w+)", expand, str(prometheus_source["url"])))
    prometheus_name, prometheus = _by_image(services, "prom/prometheus")
    assert (url.hostname, url.port) == (prometheus_name, _listen_port(prometheus))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    wanted = {v["query"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    assert wanted and wanted <= {s["type"] for s in sources}


def test_grafana_loads_the_deploy_dashboard(services: dict[str, Service]) -> None:
    _, grafana = _by_image(services, "grafana/grafana")
    directory = _grafana_provisioning(grafana, "dashboards")
    assert directory == DEPLOY / "grafana" / "provisioning" / "dashboards"
    providers = [p for path in sorted(directory.glob("*.y*ml")) for p in _yaml(path)["providers"]]
    assert providers
    loaded: set[Path] = set()
    for provider in providers:
        host = _host_path(grafana, provider["options"]["path"])
        assert host is not None and host.is_dir(), (
            f"provider {provider['name']}: {provider['options']['path']}"
        )
        loaded.update(host.glob("*.json"))
    assert DASHBOARD in loaded
    home = _environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or _host_path(grafana, home) == DASHBOARD


def test_grafana_serves_where_compose_publishes(services: dict[str, Service]) -> None:
    _, grafana = _by_image(services, "grafana/grafana")
    port = int(_environment(grafana).get("GF_SERVER_HTTP_PORT", "3000"))
    assert port in [target for _, target in _published_ports(grafana)]
    assert f":{port}/api/health" in " ".join(_healthcheck_argv(grafana))


# ---------------------------------------------------------------- README


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_readme_documents_every_alert_with_its_severity() -> None:
    section = _readme_section("Operating rtml")
    rules = [rule for group in _yaml(RULES)["groups"] for rule in group["rules"]]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(Rtml\w+)` \| (\w+)", section, re.MULTILINE)}
    assert rows == {rule["alert"]: rule["labels"]["severity"] for rule in rules}
    assert f"the {len(rules)} alerts below" in section


def test_readme_names_the_ports_compose_publishes(services: dict[str, Service]) -> None:
    section = _readme_section("Operating rtml")
    for name, service in services.items():
        for entry in service.get("ports") or []:
            host_ip, host_port, _ = str(entry).split("/", 1)[0].rsplit(":", 2)  # ip:host:container
            assert f"| {name} | {host_ip}:{host_port} |" in section, (
                f"README: {name} on {host_ip}:{host_port}"
            )
