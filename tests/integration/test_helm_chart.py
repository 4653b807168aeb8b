"""The Helm chart (deploy/helm/rtml): rendered with the real helm, validated offline, wired right.

``helm template`` runs in a subprocess (hence tests/integration): helm comes from
``deploy/helm/helm.sh``, which builds the pinned version into ``.cache/helm/`` from the Go module
proxy on first use (about three minutes on 2 cores; then cached). Every rendered manifest is
validated against the Kubernetes JSON Schema of ``KUBE_VERSION`` (kubernetes-validate, strict:
unknown fields are errors), and the custom resources against the openAPIV3Schema of their
CRDs, vendored in tests/data (tests/data/keda/README.md, tests/data/prometheus-operator/README.md),
made strict the same way. Then the semantics: each container's environment plus the rendered
config file (and the image's own ENV from compose/Dockerfile) must load with rtml's settings
loader, which refuses unknown ``RTML_*`` variables; probes, ports, grace periods, KEDA triggers
and partitions must agree with those settings.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from runtime.kafka.clients import drain_timeout_s
from runtime.kafka.profiles import DURABLE_PRODUCER, REPLY_PRODUCER
from runtime.kafka.topics import request_topic
from runtime.settings import Settings, load_settings
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.timeout(900)  # the first render may build helm (a few minutes, cold)

KUBE_VERSION = "1.30.0"
CHART = REPO_ROOT / "deploy" / "helm" / "rtml"
HELM_SH = REPO_ROOT / "deploy" / "helm" / "helm.sh"
DOCKERFILE = REPO_ROOT / "compose" / "Dockerfile"
DATA = REPO_ROOT / "tests" / "data"
CRDS = {
    "keda/keda.sh_scaledobjects.yaml": "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80",
    "keda/keda.sh_triggerauthentications.yaml": (
        "275307b4cb19ca8f0f506a879282aa4c67587ac16ec757f494d6585c5c185d65"
    ),
    "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml": (
        "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32"
    ),
}
# Keys an existingSecret must hold (deploy/README.md); stand-in values for the settings check.
SECRET_STAND_INS = {
    "redis-url": "redis://:pw@redis-master.redis:6379/0",
    "kafka-sasl-username": "rtml",
    "kafka-sasl-password": "s3cret",
    "metrics-api-key": "rtml_read_key",
}
POD_NAME = "rtml-gateway-7d9f8-abcde"
# Variables that feed rtml's settings besides RTML_* (runtime/settings.py).
CONVENTIONAL_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]


CASES = [
    Case("default", ()),
    Case("production", ("-f", str(CHART / "values-production.yaml"))),
    # Every optional branch the other two leave out: fixed replicas, no KEDA, no HPA, no drift,
    # an Ingress without TLS, TLS to Kafka without SASL.
    Case(
        "no-autoscaling",
        (
            "--set",
            "keda.enabled=false,gateway.autoscaling.enabled=false,drift.enabled=false,"
            "ingress.enabled=true,kafka.tls.enabled=true,kafka.tls.caSecret=kafka-ca,"
            "gateway.preStopSleepSeconds=5,config.env=development",
        ),
    ),
]


# ---------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def helm() -> str:
    if not os.environ.get("HELM") and not (shutil.which("go") or Path("/usr/local/go/bin/go").exists()):
        if os.environ.get("CI") == "true":
            pytest.fail("CI: neither HELM nor Go is available to build helm (deploy/helm/helm.sh)")
        pytest.skip("helm is not built and Go is not installed (deploy/helm/helm.sh needs one)")
    done = subprocess.run(
        ["bash", str(HELM_SH), "--path"], capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"deploy/helm/helm.sh could not provide helm:\n{done.stderr[-3000:]}"
    return done.stdout.strip()


def _helm_env() -> dict[str, str]:
    cache = REPO_ROOT / ".cache" / "helm" / "home"
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(cache / "cache"),
        "HELM_CONFIG_HOME": str(cache / "config"),
        "HELM_DATA_HOME": str(cache / "data"),
    }


def _render(helm: str, *args: str) -> list[Manifest]:
    done = subprocess.run(
        [helm, "template", "rtml", str(CHART), "--namespace", "ml", "--kube-version", KUBE_VERSION, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_helm_env(),
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[Manifest]]:
    return {case.name: _render(helm, *case.args) for case in CASES}


@pytest.fixture(params=[case.name for case in CASES])
def manifests(request: pytest.FixtureRequest, rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered[request.param]


def _values(case: str) -> dict[str, Any]:
    """The values a case renders with (defaults merged with the overlay; --set cases by hand)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    if case == "production":
        _merge(values, yaml.safe_load((CHART / "values-production.yaml").read_text(encoding="utf-8")))
    return values


def _merge(into: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def _one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in _of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def _component(manifests: list[Manifest], component: str) -> list[Manifest]:
    return [
        m
        for m in _of_kind(manifests, "Deployment")
        if m["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def _container(deployment: Manifest) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


# ---------------------------------------------------------------- schema validation


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused, as ``kubectl apply --validate=strict`` does
    (the API server prunes them silently otherwise; a misspelt field would just vanish)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _crd_validators() -> dict[tuple[str, str], Any]:
    validators = {}
    for relative in CRDS:
        crd = yaml.safe_load((DATA / relative).read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            # metadata is checked by the API server itself: name and labels are all we set.
            schema["properties"]["metadata"] = {"type": "object"}
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(_strict(schema))
    return validators


CRD_VALIDATORS = _crd_validators()


def _schema_errors(manifest: Manifest) -> list[str]:
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CRD_VALIDATORS:
        return [
            f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
            for error in CRD_VALIDATORS[key].iter_errors(manifest)
        ]
    try:
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}"]
    return []


@pytest.mark.parametrize("relative", sorted(CRDS))
def test_vendored_crds_are_the_recorded_ones(relative: str) -> None:
    assert hashlib.sha256((DATA / relative).read_bytes()).hexdigest() == CRDS[relative]


def test_every_manifest_matches_its_schema(manifests: list[Manifest]) -> None:
    problems = {
        f"{m['kind']}/{m['metadata']['name']}": errors for m in manifests if (errors := _schema_errors(m))
    }
    assert not problems, problems


def test_every_kind_rendered_has_a_schema(rendered: dict[str, list[Manifest]]) -> None:
    """A kind neither kubernetes-validate nor a vendored CRD knows would pass unchecked."""
    for manifests in rendered.values():
        for manifest in manifests:
            if (manifest["apiVersion"], manifest["kind"]) in CRD_VALIDATORS:
                continue
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)  # raises SchemaNotFoundError


def test_validation_rejects_broken_manifests(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production"]
    scaled = copy.deepcopy(_of_kind(manifests, "ScaledObject")[0])
    scaled["spec"]["maxReplicaCount"] = "eight"
    assert _schema_errors(scaled)
    scaled = copy.deepcopy(_of_kind(manifests, "ScaledObject")[0])
    scaled["spec"]["triggers"][0]["metdata"] = scaled["spec"]["triggers"][0].pop("metadata")
    assert _schema_errors(scaled)
    deployment = copy.deepcopy(_component(manifests, "gateway")[0])
    _container(deployment)["readinesProbe"] = _container(deployment).pop("readinessProbe")
    assert _schema_errors(deployment)
    monitor = copy.deepcopy(_of_kind(manifests, "ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert _schema_errors(monitor)


# ---------------------------------------------------------------- settings each container gets


def _dockerfile_env() -> dict[str, str]:
    """ENV of the final stage of compose/Dockerfile: what every container starts with."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if not words:
            continue
        if words[0] == "FROM":
            env = {}
        elif words[0] == "ENV" and len(words) == 2:
            for pair in shlex.split(words[1]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _secret_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    secrets = [m for m in _of_kind(manifests, "Secret") if m["metadata"]["name"] == name]
    if not secrets:  # existingSecret: managed outside the chart
        return SECRET_STAND_INS
    secret = secrets[0]
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**data, **(secret.get("stringData") or {})}


def _container_env(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    env = _dockerfile_env()
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            data = _secret_data(manifests, ref["secretKeyRef"]["name"])
            key = ref["secretKeyRef"]["key"]
            assert key in data, f"{item['name']}: secret {ref['secretKeyRef']['name']} has no key {key}"
            assert key in SECRET_STAND_INS, f"{key} is not a documented secret key"
            env[item["name"]] = data[key]
        else:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name"
            env[item["name"]] = POD_NAME
    return env


def _mounts(deployment: Manifest) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in _container(deployment).get("volumeMounts", [])}


def _settings_of(
    manifests: list[Manifest], deployment: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """What the container's process would load: its env, the rendered config at RTML_CONFIG."""
    env = _container_env(manifests, _container(deployment))
    config_path = PurePosixPath(env["RTML_CONFIG"])
    volume = _mounts(deployment)[str(config_path.parent)]
    config_map = _one(manifests, "ConfigMap", volume["configMap"]["name"])
    local = tmp_path / deployment["metadata"]["name"] / config_path.name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(config_map["data"][config_path.name], encoding="utf-8")
    env["RTML_CONFIG"] = str(local)
    for name in list(os.environ):
        if name.upper().startswith("RTML_") or name in CONVENTIONAL_VARS:
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("RTML_") or name in CONVENTIONAL_VARS:
            monkeypatch.setenv(name, value)
    return load_settings()  # SettingsError on an unknown RTML_* variable or YAML key


def _rtml_deployments(manifests: list[Manifest]) -> Iterator[Manifest]:
    for deployment in _of_kind(manifests, "Deployment"):
        if deployment["spec"]["template"]["spec"]["containers"][0]["image"].split("/")[-1].startswith("rtml"):
            yield deployment


def test_every_container_loads_valid_settings(
    manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployments = list(_rtml_deployments(manifests))
    assert deployments
    for deployment in deployments:
        settings = _settings_of(manifests, deployment, tmp_path, monkeypatch)
        mounts = _mounts(deployment)
        # Writable places are volumes (the root filesystem is read-only), and the registry
        # starts empty (an emptyDir) except where the drift app mounts a claim.
        for path in (settings.registry.root, settings.infra.state_dir):
            covering = [m for m in mounts if path.is_relative_to(m)]
            assert covering, f"{deployment['metadata']['name']}: {path} is on the root filesystem"
            volume = mounts[max(covering, key=len)]
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume, volume


def test_secret_values_reach_settings(
    rendered: dict[str, list[Manifest]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered["production"]
    for deployment in _rtml_deployments(manifests):
        settings = _settings_of(manifests, deployment, tmp_path, monkeypatch)
        assert settings.redis.url.get_secret_value() == SECRET_STAND_INS["redis-url"]
        security = settings.kafka.security_properties()
        assert security["security.protocol"] == "SASL_SSL"
        assert security["sasl.username"] == SECRET_STAND_INS["kafka-sasl-username"]
        assert security["sasl.password"] == SECRET_STAND_INS["kafka-sasl-password"]
        ca = PurePosixPath(security["ssl.ca.location"])
        assert "secret" in _mounts(deployment)[str(ca.parent)]


def test_config_map_carries_the_values_config(rendered: dict[str, list[Manifest]]) -> None:
    for case in ("default", "production"):
        values = _values(case)
        config = yaml.safe_load(_one(rendered[case], "ConfigMap", "rtml-config")["data"]["rtml.yaml"])
        for section, fields in values["config"].items():
            if isinstance(fields, dict):
                assert fields.items() <= config[section].items(), section
            else:
                assert config[section] == fields
        assert config["kafka"]["bootstrap_servers"] == values["kafka"]["bootstrapServers"]


# ---------------------------------------------------------------- gateway


def test_gateway_probes_ports_and_service(
    manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (gateway,) = _component(manifests, "gateway")
    settings = _settings_of(manifests, gateway, tmp_path, monkeypatch)
    container = _container(gateway)
    assert container["args"] == ["gateway"]
    assert settings.gateway.host == "0.0.0.0"
    assert settings.gateway.instance_id == POD_NAME
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == settings.gateway.port
    scheme = "HTTPS" if settings.gateway.tls_certfile else "HTTP"
    expected = {"livenessProbe": "/health", "readinessProbe": "/ready", "startupProbe": "/health"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == (path, "http", scheme), probe
    if settings.gateway.tls_certfile:
        assert str(settings.gateway.tls_certfile.parent) in _mounts(gateway)
    (service,) = [s for s in _of_kind(manifests, "Service") if s["metadata"]["name"] == "rtml-gateway"]
    assert service["spec"]["selector"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_gateway_grace_period_outlasts_its_drain(
    manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (gateway,) = _component(manifests, "gateway")
    settings = _settings_of(manifests, gateway, tmp_path, monkeypatch)
    pod = gateway["spec"]["template"]["spec"]
    pre_stop = _container(gateway).get("lifecycle", {}).get("preStop")
    sleep_s = float(pre_stop["exec"]["command"][1]) if pre_stop else 0.0
    # SIGTERM: /ready 503 for drain_s, then uvicorn waits up to max_timeout_ms for requests in flight.
    drain = sleep_s + settings.gateway.drain_seconds(settings.env) + settings.gateway.max_timeout_ms / 1000
    assert pod["terminationGracePeriodSeconds"] > drain
    if settings.env == "production":
        assert settings.gateway.drain_seconds(settings.env) > 0  # endpoints are removed meanwhile


def test_gateway_autoscaling_and_disruption_budget(rendered: dict[str, list[Manifest]]) -> None:
    for case in ("default", "production"):
        manifests = rendered[case]
        (gateway,) = _component(manifests, "gateway")
        assert "replicas" not in gateway["spec"]  # the HPA owns it
        (hpa,) = _of_kind(manifests, "HorizontalPodAutoscaler")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": gateway["metadata"]["name"],
        }
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        assert "cpu" in _container(gateway)["resources"]["requests"]  # utilization needs a request
        (pdb,) = _of_kind(manifests, "PodDisruptionBudget")
        labels = gateway["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a node can still drain
    fixed = rendered["no-autoscaling"]
    assert not _of_kind(fixed, "HorizontalPodAutoscaler")
    assert _component(fixed, "gateway")[0]["spec"]["replicas"] >= 1


def test_ingress_is_optional_and_routes_to_the_gateway(rendered: dict[str, list[Manifest]]) -> None:
    assert not _of_kind(rendered["default"], "Ingress")
    for case in ("production", "no-autoscaling"):
        (ingress,) = _of_kind(rendered[case], "Ingress")
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"] == {"name": "rtml-gateway", "port": {"name": "http"}}
    (ingress,) = _of_kind(rendered["production"], "Ingress")
    assert ingress["spec"]["tls"]


# ---------------------------------------------------------------- workers and KEDA


def _expected_partitions(case: str) -> dict[str, int]:
    values = _values(case)
    default = values["config"]["kafka"]["request_partitions"]
    return {model["name"]: model.get("partitions", default) for model in values["models"]}


def test_one_worker_deployment_per_model(
    rendered: dict[str, list[Manifest]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for case in ("default", "production"):
        manifests = rendered[case]
        workers = {_container(d)["args"][2]: d for d in _component(manifests, "worker")}
        assert sorted(workers) == sorted(_expected_partitions(case))
        for model, deployment in workers.items():
            assert _container(deployment)["args"] == ["worker", "--model", model]
            assert "replicas" not in deployment["spec"]  # KEDA owns it
            settings = _settings_of(manifests, deployment, tmp_path, monkeypatch)
            assert settings.worker.metrics_host == "0.0.0.0"
            port = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}["metrics"]
            assert port == settings.worker.metrics_port
            paths = {"livenessProbe": "/health", "readinessProbe": "/ready", "startupProbe": "/ready"}
            for probe, path in paths.items():
                get = _container(deployment)[probe]["httpGet"]
                assert (get["path"], get["port"]) == (path, "metrics"), probe
            # Models arrive through the artifacts topic: the registry starts as an emptyDir.
            assert "emptyDir" in _mounts(deployment)[str(settings.registry.root.parent)]
    for deployment in _component(rendered["no-autoscaling"], "worker"):
        assert deployment["spec"]["replicas"] >= 1


def test_worker_grace_period_outlasts_its_drain(
    manifests: list[Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for deployment in _component(manifests, "worker"):
        settings = _settings_of(manifests, deployment, tmp_path, monkeypatch)
        # workers/loop.py: on stop, flush both producers for drain_timeout_s of their timeouts.
        timeouts = [p.message_timeout_ms(settings.kafka) / 1000 for p in (DURABLE_PRODUCER, REPLY_PRODUCER)]
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > drain_timeout_s(*timeouts), deployment["metadata"]["name"]


def test_scaled_objects_follow_each_models_consumer_group(
    rendered: dict[str, list[Manifest]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for case in ("default", "production"):
        manifests = rendered[case]
        partitions = _expected_partitions(case)
        workers = {d["metadata"]["name"]: d for d in _component(manifests, "worker")}
        scaled_objects = _of_kind(manifests, "ScaledObject")
        assert len(scaled_objects) == len(partitions)
        for scaled in scaled_objects:
            spec = scaled["spec"]
            deployment = workers[spec["scaleTargetRef"]["name"]]
            model = _container(deployment)["args"][2]
            settings = _settings_of(manifests, deployment, tmp_path, monkeypatch)
            assert spec["maxReplicaCount"] == partitions[model]
            assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
            (trigger,) = spec["triggers"]
            assert trigger["type"] == "kafka"
            metadata = trigger["metadata"]
            assert metadata["consumerGroup"] == f"{settings.worker.group_prefix}{model}"  # workers/loop.py
            assert metadata["topic"] == request_topic(settings.kafka, model).name
            assert metadata["bootstrapServers"] == settings.kafka.bootstrap_servers
            assert metadata["offsetResetPolicy"] == "earliest"  # REQUEST_CONSUMER's auto.offset.reset
            assert int(metadata["lagThreshold"]) > 0
    assert not _of_kind(rendered["no-autoscaling"], "ScaledObject")


def test_keda_authenticates_like_the_workers(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["production"]
    (auth,) = _of_kind(manifests, "TriggerAuthentication")
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert params["username"]["key"] == "kafka-sasl-username"
    assert params["password"]["key"] == "kafka-sasl-password"
    assert params["ca"]["name"] == _values("production")["kafka"]["tls"]["caSecret"]
    for scaled in _of_kind(manifests, "ScaledObject"):
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert (trigger["metadata"]["sasl"], trigger["metadata"]["tls"]) == ("scram_sha512", "enable")
    for scaled in _of_kind(rendered["default"], "ScaledObject"):
        assert "authenticationRef" not in scaled["spec"]["triggers"][0]


# ---------------------------------------------------------------- every pod


def test_pods_are_pinned_unprivileged_and_bounded(manifests: list[Manifest]) -> None:
    for deployment in _of_kind(manifests, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        container = _container(deployment)
        image = container["image"]
        assert "@sha256:" in image or (":" in image and not image.endswith(":latest")), image
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert "/tmp" in _mounts(deployment), name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][kind].keys(), (name, kind)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert "checksum/config" in annotations, name  # a config change rolls the pods


def test_image_tag_is_the_values_tag(rendered: dict[str, list[Manifest]]) -> None:
    for case in ("default", "production"):
        image = _values(case)["image"]
        for deployment in _of_kind(rendered[case], "Deployment"):
            assert _container(deployment)["image"] == f"{image['repository']}:{image['tag']}"


def test_prometheus_scraping(rendered: dict[str, list[Manifest]]) -> None:
    for deployment in _of_kind(rendered["default"], "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        ports = {p["containerPort"] for p in _container(deployment)["ports"]}
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) in ports
    assert not _of_kind(rendered["default"], "ServiceMonitor")
    manifests = rendered["production"]
    monitors = {m["metadata"]["name"]: m for m in _of_kind(manifests, "ServiceMonitor")}
    services = {s["metadata"]["name"]: s for s in _of_kind(manifests, "Service")}
    pods = _component(manifests, "gateway") + _component(manifests, "worker") + _component(manifests, "drift")
    scraped: set[str] = set()
    for monitor in monitors.values():
        (endpoint,) = monitor["spec"]["endpoints"]
        for service in services.values():
            if not _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]):
                continue
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
            for pod in pods:
                if _selects(service["spec"]["selector"], pod["spec"]["template"]["metadata"]["labels"]):
                    assert endpoint["port"] in {p["name"] for p in _container(pod)["ports"]}
                    scraped.add(pod["metadata"]["name"])
    assert scraped == {pod["metadata"]["name"] for pod in pods}
    # Job names as in deploy/prometheus/prometheus.yml (rtml-gateway, rtml-worker, rtml-drift).
    assert monitors["rtml-gateway"]["spec"]["endpoints"][0]["relabelings"] == [
        {"targetLabel": "job", "replacement": "rtml-gateway"}
    ]
    (relabel,) = monitors["rtml-processes"]["spec"]["endpoints"][0]["relabelings"]
    assert relabel["replacement"] == "rtml-$1" and relabel["targetLabel"] == "job"
    components = {p["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}
    assert components == {"gateway", "worker", "drift"}
    gateway = monitors["rtml-gateway"]["spec"]["endpoints"][0]
    assert gateway["authorization"]["credentials"]["key"] == "metrics-api-key"  # auth: required
    assert gateway["scheme"] == "https"


# ---------------------------------------------------------------- reply-topic janitor


def _cron_pod(cronjob: Manifest) -> Manifest:
    """A CronJob's pod template in the shape the Deployment helpers above read."""
    return {"metadata": cronjob["metadata"], "spec": cronjob["spec"]["jobTemplate"]["spec"]}


def test_reply_topic_gc_cronjob_runs_the_sweep_with_the_gateways_settings(
    helm: str, rendered: dict[str, list[Manifest]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtml.cli import _parser

    for case in ("default", "production"):
        manifests = rendered[case]
        (cronjob,) = _of_kind(manifests, "CronJob")
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        pod = _cron_pod(cronjob)
        assert pod["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        container = _container(pod)
        args = _parser("gateway").parse_args(container["args"])
        assert args.command == "gateway" and args.action == "gc-reply-topics" and not args.dry_run
        settings = _settings_of(manifests, pod, tmp_path, monkeypatch)
        (gateway,) = _component(manifests, "gateway")
        gateway_settings = _settings_of(manifests, gateway, tmp_path, monkeypatch)
        # The same cluster and prefix as the gateways, or it sweeps someone else's topics.
        assert settings.kafka.bootstrap_servers == gateway_settings.kafka.bootstrap_servers
        assert settings.kafka.reply_topic_prefix == gateway_settings.kafka.reply_topic_prefix
        assert settings.kafka.security_properties() == gateway_settings.kafka.security_properties()
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
        assert (
            args.watch is not None
            and args.watch < cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        )
    assert not _of_kind(_render(helm, "--set", "replyTopicGC.enabled=false"), "CronJob")
