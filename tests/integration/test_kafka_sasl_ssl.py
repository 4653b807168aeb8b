"""Kafka over SASL_SSL (issue 11): a real broker whose client listener takes TLS and SASL/PLAIN only,
and every rtml process on it through ``kafka.security``: the gateway and worker (confluent clients)
answer HTTP and direct-Kafka requests, and the drift app's Faust clients (aiokafka) aggregate the
log; a wrong password is refused by the broker, and the password appears in no log line.

The broker keeps a PLAINTEXT listener for its own controller traffic and readiness probe; no rtml
client is pointed at it. Certificates are made here with openssl (a PEM keystore: no keytool)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rtml.infra import external_kafka, kafka
from rtml.infra.process import free_ports
from rtml.stack import Child
from tests.infra_fixtures import LocalKafka, _cache_dir
from tests.kafka_tools import committed_lag, produce, read_topic
from tests.model_fixtures import DemoModels
from tests.stack_fixtures import RunningStack, StackFactory, free_port

USER, PASSWORD = "rtml-service", "sasl-test-s3cret-pw"
ADMIN_PASSWORD = "sasl-admin-pw"
MODEL = "iris_classifier"
ROW = [6.3, 2.9, 5.6, 1.8]


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    cafile: Path

    def security(self, password: str = PASSWORD) -> dict[str, str]:
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": USER,
            "sasl.password": password,
            "ssl.ca.location": str(self.cafile),
        }


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def secure_properties(host: str, ports: tuple[int, int, int], keystore: Path) -> dict[str, str]:
    plain, controller, secure = ports
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="admin" password="{ADMIN_PASSWORD}" '
        f'user_admin="{ADMIN_PASSWORD}" user_{USER}="{PASSWORD}";'
    )
    return {
        "listeners": f"PLAINTEXT://{host}:{plain},CONTROLLER://{host}:{controller},SASL_SSL://{host}:{secure}",
        "advertised.listeners": f"PLAINTEXT://{host}:{plain},SASL_SSL://{host}:{secure}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
        "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
        "listener.name.sasl_ssl.ssl.keystore.location": str(keystore),
    }


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    if external_kafka() is not None:
        pytest.skip(
            "needs a locally provisioned broker, but KAFKA_BOOTSTRAP_SERVERS points at an external one"
        )
    directory = tmp_path_factory.mktemp("sasl-kafka")
    cert, key = make_certificate(directory)
    keystore = directory / "keystore.pem"  # Kafka's PEM keystore: the private key, then its chain
    keystore.write_text(key.read_text() + cert.read_text())
    plain, controller, secure = free_ports(3)
    node = kafka.KafkaNode(
        directory / "kafka", plain, controller, _cache_dir(),
        properties=secure_properties("127.0.0.1", (plain, controller, secure), keystore),
    )  # fmt: skip
    broker = LocalKafka(node)
    try:
        broker.start()
        yield SecureBroker(f"127.0.0.1:{secure}", cert)
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def secure_stack(
    stack_factory: StackFactory,
    secure_broker: SecureBroker,
    demo_models: DemoModels,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningStack:
    registry = demo_models.copy(tmp_path_factory.mktemp("sasl-registry"), MODEL)
    return stack_factory(
        workers=1,
        models=[MODEL],
        bootstrap=secure_broker.bootstrap,
        registry=registry.root,
        extra_env={"RTML_KAFKA__SECURITY": json.dumps(secure_broker.security())},
    )


def test_a_wrong_password_is_refused_by_the_broker(secure_broker: SecureBroker) -> None:
    config = {"bootstrap.servers": secure_broker.bootstrap, **secure_broker.security("not-the-password")}
    with pytest.raises(KafkaException):
        AdminClient(config).list_topics(timeout=10)
    right = {"bootstrap.servers": secure_broker.bootstrap, **secure_broker.security()}
    assert AdminClient(right).list_topics(timeout=15).brokers


def test_http_and_direct_kafka_over_sasl_ssl(secure_stack: RunningStack, secure_broker: SecureBroker) -> None:
    answer = httpx.post(
        f"{secure_stack.base_url}/api/v1/predict", json={"model_name": MODEL, "features": ROW}, timeout=15
    )
    assert answer.status_code == 200, answer.text
    request_id = f"sasl-{uuid.uuid4().hex[:8]}"
    request = {"schema_version": 1, "request_id": request_id, "model": MODEL, "features": [ROW, ROW]}
    security = secure_broker.security()
    produce(
        secure_broker.bootstrap, secure_stack.request_topic(MODEL), [orjson.dumps(request)], security=security
    )
    records = read_topic(
        secure_broker.bootstrap,
        secure_stack.namespace.predictions_topic,
        lambda got: sum(r["request_id"] == request_id for r in got) >= 2,
        timeout_s=30,
        security=security,
    )
    assert sum(r["request_id"] == request_id for r in records) == 2
    logs = "".join(child.log_path.read_text() for child in secure_stack.stack.children)
    assert PASSWORD not in logs


def test_the_drift_app_reads_the_log_over_sasl_ssl(
    secure_stack: RunningStack, secure_broker: SecureBroker
) -> None:
    """The drift app's reader commits the log only once its Faust producer's partials are
    acknowledged, and its Faust agent commits the partials it consumed: both lags reaching zero
    prove the confluent and the aiokafka clients authenticated."""
    tag = secure_stack.namespace.tag
    group, partials = f"t{tag}.drift.reader", f"t{tag}.drift.partials"
    drift = secure_stack.stack.spawn(
        "drift",
        ["drift"],
        {
            "RTML_DRIFT__APP_ID": f"t{tag}-drift",
            "RTML_DRIFT__READER_GROUP": group,
            "RTML_DRIFT__PARTIALS_TOPIC": partials,
            "RTML_DRIFT__ALERTS_TOPIC": f"t{tag}.drift.alerts",
            "RTML_DRIFT__DEAD_LETTER_TOPIC": f"t{tag}.drift.dlq",
            "RTML_DRIFT__METRICS_PORT": str(free_port()),
        },
    )
    for i in range(20):
        response = httpx.post(
            f"{secure_stack.base_url}/api/v1/predict",
            json={"model_name": MODEL, "features": [ROW[0] + i / 10, *ROW[1:]]},
            timeout=15,
        )
        assert response.status_code == 200, response.text
    security = secure_broker.security()
    log_topic = secure_stack.namespace.predictions_topic
    wait_for(
        lambda: committed_lag(secure_broker.bootstrap, group, log_topic, security) == 0, drift, "log lag 0"
    )
    app_group = f"t{tag}-drift"
    wait_for(
        lambda: committed_lag(secure_broker.bootstrap, app_group, partials, security) == 0, drift, "partials"
    )
    assert drift.alive, drift.log_tail()
    assert PASSWORD not in drift.log_path.read_text()


def wait_for(condition: Callable[[], bool], child: Child, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except KafkaException:
            pass  # the group has not committed yet
        assert child.alive, f"{child.name} exited while waiting for {what}:\n{child.log_tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{child.log_tail()}"
        time.sleep(0.5)
