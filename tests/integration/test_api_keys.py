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

from rtml.infra.process import free_ports
from rtml.stack import wait_http_ok
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
    assert "reply_topic" not in httpx.get(f"{secured.base_url}/ready", timeout=10).json()  # public: no topic

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


def test_rates_per_key_and_per_model_are_shared_by_every_gateway(stack_factory: StackFactory) -> None:
    """Issue 11: a key's --rate and gateway.model_rates hold across two gateways (one Redis script),
    answered 429 with Retry-After and the RateLimit headers."""
    stack = stack_factory(
        workers=1,
        models=["iris_classifier"],
        extra_env={"RTML_GATEWAY__AUTH": "required", "RTML_GATEWAY__MODEL_RATES": '{"iris_classifier": 8}'},
    )
    (second_port,) = free_ports(1)
    second = stack.stack.gateway(
        "gateway-2",
        {"RTML_GATEWAY__PORT": str(second_port), "RTML_GATEWAY__INSTANCE_ID": f"gw2-{stack.namespace.tag}"},
    )
    second_url = f"http://127.0.0.1:{second_port}"
    wait_http_ok(f"{second_url}/ready", timeout_s=60, child=second)
    done = keys(stack, "create", "slow", "--scopes", "predict", "--rate", "3")
    assert done.returncode == 0, done.stderr
    slow = done.stdout.strip()
    fast = create(stack, "fast", "predict")
    body = {"model_name": "iris_classifier", "features": ROW}

    spans: list[float] = []

    def burst(key: str, n: int) -> list[httpx.Response]:
        started = time.monotonic()
        answers = [
            httpx.post(f"{url}/api/v1/predict", json=body, headers={"X-API-Key": key}, timeout=10)
            for url in [stack.base_url, second_url] * (n // 2)
        ]
        spans.append(time.monotonic() - started)
        return answers

    wait_until(lambda: burst(fast, 2)[-1].status_code == 200)
    time.sleep(1.5)  # let both buckets fill again
    answers = burst(slow, 12)
    allowed = [r for r in answers if r.status_code == 200]
    limited = [r for r in answers if r.status_code == 429]
    # 3 a second with a burst of 3, shared: not 3 per gateway (plus what refills while it runs)
    assert 3 <= len(allowed) <= 4 + 3 * spans[-1] and limited, [r.status_code for r in answers]
    refused = limited[0]
    assert (
        refused.json()["error"]["code"] == "rate_limited"
        and "API key 'slow'" in refused.json()["error"]["message"]
    )
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"

    time.sleep(1.5)
    model_answers = burst(fast, 30)  # the key has no rate; the model allows 8 a second
    model_limited = [r for r in model_answers if r.status_code == 429]
    assert model_limited and "model 'iris_classifier'" in model_limited[0].json()["error"]["message"]
    assert 8 <= sum(r.status_code == 200 for r in model_answers) <= 9 + 8 * spans[-1]
    ready = httpx.get(f"{stack.base_url}/ready", timeout=10).json()
    assert ready["rate_limits"] == "shared through Redis"
