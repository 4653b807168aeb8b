"""API keys and scopes on the real stack (issue 11): `rtml keys create|list|revoke`, 401/403 as
JSON errors on every endpoint but liveness/readiness, the client SDK's api_key, revocation within
5 s, and no key or hash in any log line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from rtml_client import AuthenticationError, MLClient, PermissionDenied
from runtime.api_keys import hash_key
from tests.stack_fixtures import RunningStack, StackFactory

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def secured(stack_factory: StackFactory) -> RunningStack:
    return stack_factory(workers=1, models=["iris_classifier"], extra_env={"RTML_GATEWAY__AUTH": "required"})


def keys(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.stack.env}
    command = [sys.executable, "-m", "rtml.cli", "keys", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def create(stack: RunningStack, name: str, scopes: str) -> str:
    done = keys(stack, "create", name, "--scopes", scopes)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("rtml_") and len(key) > 40
    return key


def predict(stack: RunningStack, headers: dict[str, str]) -> httpx.Response:
    body = {"model_name": "iris_classifier", "features": ROW}
    return httpx.post(f"{stack.base_url}/api/v1/predict", json=body, headers=headers, timeout=10)


def wait_until(check: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.1)


def test_keys_and_scopes_guard_every_endpoint(secured: RunningStack) -> None:
    predictor = create(secured, "fraud-service", "predict")
    operator = create(secured, "ops", "read,admin")
    wait_until(lambda: predict(secured, {"Authorization": f"Bearer {predictor}"}).status_code == 200)

    missing = predict(secured, {})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = predict(secured, {"Authorization": "Bearer rtml_not-a-key"})
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["error"]["message"]
    assert predict(secured, {"X-API-Key": predictor}).status_code == 200

    models = httpx.get(f"{secured.base_url}/api/v1/models", headers={"X-API-Key": predictor}, timeout=10)
    assert models.status_code == 403 and "needs 'read'" in models.json()["error"]["message"]
    assert (
        httpx.get(
            f"{secured.base_url}/api/v1/models", headers={"X-API-Key": operator}, timeout=10
        ).status_code
        == 200
    )
    admin = httpx.get(
        f"{secured.base_url}/api/v1/admin/models/iris_classifier/status",
        headers={"X-API-Key": predictor},
        timeout=10,
    )
    assert admin.status_code == 403
    assert predict(secured, {"X-API-Key": operator}).status_code == 403
    v2 = httpx.post(
        f"{secured.base_url}/v2/models/iris_classifier/infer",
        json={"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": ROW}]},
        timeout=10,
    )
    assert v2.status_code == 401 and isinstance(v2.json()["error"], str)  # the V2 error shape
    for path in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(f"{secured.base_url}{path}", timeout=10).status_code == 200, path

    with MLClient(secured.base_url, api_key=predictor, retries=0) as client:
        assert client.predict("iris_classifier", ROW).model_version
    with MLClient(secured.base_url, retries=0) as client, pytest.raises(AuthenticationError):
        client.predict("iris_classifier", ROW)
    with MLClient(secured.base_url, api_key=predictor, retries=0) as client, pytest.raises(PermissionDenied):
        client.list_models()

    listed = keys(secured, "list")
    assert "fraud-service\tscopes: predict" in listed.stdout and predictor not in listed.stdout

    revoked = keys(secured, "revoke", "fraud-service")
    assert revoked.returncode == 0, revoked.stderr
    wait_until(lambda: predict(secured, {"X-API-Key": predictor}).status_code == 401)

    logs = "".join(child.log_path.read_text() for child in secured.stack.children)
    for secret in (predictor, operator, hash_key(predictor), hash_key(operator)):
        assert secret not in logs


def test_key_commands_refuse_bad_input(secured: RunningStack) -> None:
    done = keys(secured, "create", "x", "--scopes", "predict,root")
    assert done.returncode == 2 and "unknown" in done.stderr
    create(secured, "dup", "read")
    again = keys(secured, "create", "dup", "--scopes", "read")
    assert again.returncode == 1 and "exists" in again.stderr
    assert keys(secured, "revoke", "nobody").returncode == 1
