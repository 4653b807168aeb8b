"""TLS (issue 11): the gateway over HTTPS, and every Redis client (gateway, workers, fleet, keys)
against a real redis-server that requires a password and TLS (`rediss://`); the password appears
in no log line. Certificates are made here with openssl."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from rtml.infra.process import free_ports
from tests.stack_fixtures import StackFactory

PASSWORD = "tls-test-s3cret-pw"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_redis(certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """redis-server with TLS only (no plaintext port) and a password; stopped by its PID."""
    cert, key = certificate
    (port,) = free_ports(1)
    directory = tmp_path_factory.mktemp("tls-redis")
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if redis.Redis.from_url(url, socket_timeout=1).ping():
                    break
            except redis.RedisError:
                assert time.monotonic() < deadline and server.poll() is None, "TLS redis-server did not start"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_https_gateway_and_tls_redis_with_a_password(
    stack_factory: StackFactory, certificate: tuple[Path, Path], tls_redis: str
) -> None:
    cert, key = certificate
    stack = stack_factory(
        workers=1,
        models=["iris_classifier"],
        redis=tls_redis,
        cafile=str(cert),
        extra_env={"RTML_GATEWAY__TLS_CERTFILE": str(cert), "RTML_GATEWAY__TLS_KEYFILE": str(key)},
    )
    assert stack.base_url.startswith("https://")
    body = {"model_name": "iris_classifier", "features": [6.3, 2.9, 5.6, 1.8]}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as client:
        first = client.post(f"{stack.base_url}/api/v1/predict", json=body)
        assert first.status_code == 200, first.text
        deadline = time.monotonic() + 5  # the worker writes the cache just after it replies
        while not client.post(f"{stack.base_url}/api/v1/predict", json=body).json()["from_cache"]:
            assert time.monotonic() < deadline, "never answered from the TLS Redis cache"
            time.sleep(0.1)
        assert client.get(f"{stack.base_url}/ready").json()["cache"] == "up"
    with pytest.raises(httpx.TransportError):  # plain HTTP is not served on the TLS port
        httpx.post(stack.base_url.replace("https", "http"), json=body, timeout=5)
    logs = "".join(child.log_path.read_text() for child in stack.stack.children)
    assert PASSWORD not in logs
