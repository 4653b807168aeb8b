"""One settings object: YAML defaults, RTML_* overrides, conventional variables, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.settings import load_settings


def test_yaml_then_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("worker:\n  max_batch_rows: 64\ngateway:\n  port: 9000\n")
    monkeypatch.setenv("RTML_CONFIG", str(config))
    monkeypatch.setenv("RTML_GATEWAY__PORT", "9100")
    settings = load_settings()
    assert settings.worker.max_batch_rows == 64
    assert settings.gateway.port == 9100


def test_conventional_variables_and_masked_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RTML_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("RTML_REDIS__URL", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache:6379/0")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "broker:29092"
    assert settings.redis.url.get_secret_value().endswith("@cache:6379/0")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_settings_are_frozen_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.gateway.port = 1  # type: ignore[misc]
    monkeypatch.setenv("RTML_WORKER__MAX_BATCH_ROWS", "0")
    with pytest.raises(ValueError):
        load_settings()
