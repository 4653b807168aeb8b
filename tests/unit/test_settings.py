"""One settings object: its sources and their order, unknown keys refused, production refusing
developer defaults, rules between fields, paths outside the installed package, secrets masked."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import runtime
from runtime.errors import SettingsError
from runtime.settings import DriftModelSettings, DriftSettings, DriftThreshold, load_settings
from runtime.settings_sources import NON_SETTING_VARS
from tests.paths import REPO_ROOT

SECTION_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No RTML_* or conventional variables from the caller; a private home directory."""
    for name in list(os.environ):
        if name.upper().startswith("RTML_") or name in SECTION_VARS:
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rtml.yaml"
    path.write_text(text)
    return path


def use_config(monkeypatch: pytest.MonkeyPatch, directory: Path, text: str) -> Path:
    path = write_config(directory, text)
    monkeypatch.setenv("RTML_CONFIG", str(path))
    return path


def production_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_ENV", "production")
    monkeypatch.setenv("RTML_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("RTML_KAFKA__REPLICATION_FACTOR", "3")
    monkeypatch.setenv("RTML_REDIS__URL", "redis://cache:6379/0")
    monkeypatch.setenv("RTML_REGISTRY__ROOT", "/srv/rtml/models")


# ------------------------------------------------------------------ sources and their order


def test_yaml_then_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_config(monkeypatch, tmp_path, "worker:\n  max_batch_rows: 64\ngateway:\n  port: 9000\n")
    monkeypatch.setenv("RTML_GATEWAY__PORT", "9100")
    settings = load_settings()
    assert settings.worker.max_batch_rows == 64
    assert settings.gateway.port == 9100


def test_priority_init_env_conventional_yaml_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_config(
        monkeypatch,
        tmp_path,
        "kafka:\n  bootstrap_servers: yaml:1\n  dlq_topic: yaml.dlq\n  log_partitions: 7\n"
        "redis:\n  url: redis://yaml:1/0\n  ttl_s: 9\n",
    )
    assert load_settings().kafka.bootstrap_servers == "yaml:1"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "conventional:1")
    monkeypatch.setenv("REDIS_URL", "redis://conventional:1/0")
    assert load_settings().kafka.bootstrap_servers == "conventional:1"
    monkeypatch.setenv("RTML_KAFKA__BOOTSTRAP_SERVERS", "rtml:1")
    monkeypatch.setenv("RTML_KAFKA__DLQ_TOPIC", "env.dlq")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "rtml:1"
    # Sections merge key by key across sources.
    assert (settings.kafka.dlq_topic, settings.kafka.log_partitions) == ("env.dlq", 7)
    assert settings.redis.url.get_secret_value() == "redis://conventional:1/0"
    assert settings.redis.ttl_s == 9
    assert settings.kafka.request_partitions == 4  # the default
    assert load_settings(kafka={"bootstrap_servers": "init:1"}).kafka.bootstrap_servers == "init:1"


def test_conventional_variables_and_masked_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:29092")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache:6379/0")
    before = dict(os.environ)
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "broker:29092"
    assert settings.redis.url.get_secret_value().endswith("@cache:6379/0")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert dict(os.environ) == before, "load_settings must not write to the environment"


def test_empty_conventional_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    assert load_settings().kafka.bootstrap_servers == "127.0.0.1:9092"


def test_no_config_file_unless_named() -> None:
    settings = load_settings()
    assert settings.gateway.port == 8080
    assert settings.env == "development"


def test_named_config_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match=r"RTML_CONFIG names .*missing\.yaml, which cannot be read"):
        load_settings()


def test_config_file_must_hold_a_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_config(monkeypatch, tmp_path, "- gateway\n- port\n")
    with pytest.raises(SettingsError, match="holds a list; expected a mapping"):
        load_settings()
    use_config(monkeypatch, tmp_path, "gateway: [\n")
    with pytest.raises(SettingsError, match="is not valid YAML"):
        load_settings()


def test_settings_are_frozen_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.gateway.port = 1  # type: ignore[misc]
    monkeypatch.setenv("RTML_WORKER__MAX_BATCH_ROWS", "0")
    with pytest.raises(
        SettingsError, match=r"worker\.max_batch_rows: Input should be greater than or equal to 1"
    ):
        load_settings()


# ------------------------------------------------------------------ unknown keys


def test_unknown_yaml_keys_at_every_level_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = use_config(
        monkeypatch,
        tmp_path,
        "gatway:\n  port: 1\n"
        "worker:\n  max_batch_rowz: 2\n"
        "drift:\n  models:\n    iris:\n      windw_s: 60\n  thresholds:\n    psi:\n      warn: 0.1\n"
        "nonsense: 1\n",
    )
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{path}: no setting 'gatway' (did you mean 'gateway'?)" in message
    assert "no setting 'worker.max_batch_rowz' (did you mean 'worker.max_batch_rows'?)" in message
    assert "no setting 'drift.models.iris.windw_s' (did you mean 'drift.models.iris.window_s'?)" in message
    assert "no setting 'drift.thresholds.psi.warn' (did you mean 'drift.thresholds.psi.warning'?)" in message
    assert "no setting 'nonsense' (known: env, log_level" in message


def test_unknown_rtml_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_GATWAY__PORT", "9000")
    monkeypatch.setenv("RTML_WORKER__MAX_BATCH_ROWZ", "5")
    monkeypatch.setenv("RTML_GATEWAY__PORT__NUMBER", "5")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "RTML_GATWAY__PORT: no setting 'gatway' (did you mean RTML_GATEWAY__PORT?)" in message
    assert "RTML_WORKER__MAX_BATCH_ROWZ: no setting 'worker.max_batch_rowz' (did you mean " in message
    assert "RTML_GATEWAY__PORT__NUMBER: 'gateway.port' is a value, not a section" in message


def test_env_variable_names_are_case_insensitive_like_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("rtml_gateway__port", "9001")
    assert load_settings().gateway.port == 9001
    monkeypatch.setenv("rtml_gateway__prot", "9001")
    with pytest.raises(SettingsError, match=r"rtml_gateway__prot: no setting 'gateway\.prot'"):
        load_settings()


def test_variables_that_are_not_settings_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_config(monkeypatch, tmp_path, "{}\n")
    monkeypatch.setenv("RTML_URL", "http://gateway:8080")
    monkeypatch.setenv("RTML_API_KEY", "k")
    monkeypatch.setenv("RTML_KAFKA__SECURITY", '{"security.protocol": "SSL"}')  # a mapping, as JSON
    monkeypatch.setenv("RTML_KAFKA__SECURITY__SASL_USERNAME", "u")  # or key by key: any key passes
    monkeypatch.setenv("RTML_DRIFT__MODELS__IRIS__WINDOW_S", "60")  # a per-model section
    settings = load_settings()
    assert settings.kafka.security_properties() == {"security.protocol": "SSL", "sasl_username": "u"}
    assert "u'" not in repr(settings.kafka)  # the values are masked
    assert settings.drift.models["iris"].window_s == 60


def test_the_client_variables_are_allow_listed() -> None:
    """Every RTML_* name the client SDK reads shares the shell with the server's settings."""
    client = REPO_ROOT / "client" / "rtml_client"
    read = {name for path in client.rglob("*.py") for name in re.findall(r"RTML_[A-Z_]+", path.read_text())}
    assert read, "the client reads RTML_URL and RTML_API_KEY"
    assert read <= NON_SETTING_VARS


def test_unknown_keyword_argument_is_named() -> None:
    with pytest.raises(SettingsError, match=r"gateway\.prot: Extra inputs are not permitted"):
        load_settings(gateway={"prot": 1})


# ------------------------------------------------------------------ production


def test_production_lists_every_developer_default_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTML_ENV", "production")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "env is production" in message
    for key in ("kafka.bootstrap_servers", "kafka.replication_factor", "redis.url", "registry.root"):
        assert f"- {key} (default " in message, key


def test_production_accepts_explicit_values(monkeypatch: pytest.MonkeyPatch) -> None:
    production_env(monkeypatch)
    settings = load_settings()
    assert settings.env == "production"
    assert settings.kafka.replication_factor == 3


def test_production_explicit_from_any_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The conventional variables and the YAML file count; so does a value equal to the default."""
    monkeypatch.setenv("RTML_ENV", "production")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    use_config(monkeypatch, tmp_path, "kafka:\n  replication_factor: 1\nregistry:\n  root: /srv/models\n")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert [line for line in str(caught.value).splitlines() if line.strip().startswith("- ")] == [
        "    - redis.url (default redis://127.0.0.1:6379/0: a Redis server on this machine)"
    ]
    monkeypatch.setenv("RTML_REDIS__ENABLED", "false")  # no cache: no Redis URL needed
    assert load_settings().redis.enabled is False


def test_development_and_test_keep_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("development", "test"):
        monkeypatch.setenv("RTML_ENV", env)
        assert load_settings().kafka.bootstrap_servers == "127.0.0.1:9092"


# ------------------------------------------------------------------ rules between fields


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"RTML_GATEWAY__DEFAULT_TIMEOUT_MS": "70000"},
            "gateway: default_timeout_ms (70000) exceeds max_timeout_ms (60000)",
        ),
        (
            {"RTML_DRIFT__WINDOW_S": "100"},
            "drift: window_s (100.0) is not a whole number (>= 1) of step_s (30.0)",
        ),
        (
            {"RTML_DRIFT__STEP_S": "600"},
            "drift: window_s (300.0) is not a whole number (>= 1) of step_s (600.0)",
        ),
        (
            {"RTML_DRIFT__MODELS__IRIS__WINDOW_S": "45"},
            "drift: models.iris.window_s (45.0) is not a whole number (>= 1) of step_s (30.0)",
        ),
        (
            {"RTML_DRIFT__MODELS__IRIS__STEP_S": "7"},
            "drift: window_s (300.0) is not a whole number (>= 1) of models.iris.step_s (7.0)",
        ),
        (
            {"RTML_DRIFT__FORWARD_BACKOFF_S": "60"},
            "drift: forward_backoff_s (60.0) exceeds forward_max_backoff_s (30.0)",
        ),
        (
            {"RTML_DRIFT__THRESHOLDS__PSI": '{"warning": 0.3, "critical": 0.2}'},
            "drift.thresholds.psi: warning (0.3) exceeds critical (0.2)",
        ),
        ({"RTML_INFRA__REDIS_PORT": "9092"}, "infra: the local services need three different ports"),
        (
            {"RTML_KAFKA__DLQ_TOPIC": "rtml.predictions"},
            "kafka.predictions_topic and kafka.dlq_topic are both 'rtml.predictions'",
        ),
        (
            {"RTML_DRIFT__PARTIALS_TOPIC": "rtml.requests.partials"},
            "drift.partials_topic ('rtml.requests.partials') starts with kafka.request_topic_prefix",
        ),
        (
            {"RTML_KAFKA__REPLY_TOPIC_PREFIX": "rtml.requests.replies."},
            "kafka.request_topic_prefix ('rtml.requests.') and kafka.reply_topic_prefix",
        ),
    ],
)
def test_fields_that_must_agree(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert expected in str(caught.value)


def test_whole_windows_pass() -> None:
    models = {"a": DriftModelSettings(window_s=60, step_s=5), "b": DriftModelSettings(window_s=0.2)}
    drift = DriftSettings(window_s=0.5, step_s=0.1, models=models)
    assert drift.models["a"].window_s == 60
    assert DriftThreshold(warning=0.2, critical=0.2).critical == 0.2


# ------------------------------------------------------------------ paths


def test_default_directories_follow_xdg(clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    home = clean_environment
    assert settings.registry.root == home / ".local" / "share" / "rtml" / "models"
    assert settings.infra.state_dir == home / ".local" / "state" / "rtml"
    assert settings.infra.cache_dir == home / ".cache" / "rtml"
    package = Path(runtime.__file__).resolve().parent.parent
    for path in (settings.registry.root, settings.infra.state_dir, settings.infra.cache_dir):
        assert not path.is_relative_to(package)
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg/data")
    monkeypatch.setenv("XDG_STATE_HOME", "/xdg/state")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    settings = load_settings()
    assert settings.registry.root == Path("/xdg/data/rtml/models")
    assert settings.infra.state_dir == Path("/xdg/state/rtml")
    assert settings.infra.cache_dir == home / ".cache" / "rtml"


def test_relative_paths_resolve_against_the_config_file(
    tmp_path: Path, clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_config(
        monkeypatch,
        tmp_path / "etc",
        "registry:\n  root: ../models\ninfra:\n  state_dir: state\n  cache_dir: ~/jars\n",
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.registry.root == tmp_path / "models"
    assert settings.infra.state_dir == tmp_path / "etc" / "state"
    assert settings.infra.cache_dir == clean_environment / "jars"
    monkeypatch.setenv("RTML_REGISTRY__ROOT", "from-env")  # the environment's are the caller's to resolve
    assert load_settings().registry.root == Path("from-env")


def test_the_developer_config_points_into_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `make run` and `make test` read (the Makefile exports RTML_CONFIG)."""
    monkeypatch.setenv("RTML_CONFIG", str(REPO_ROOT / "config" / "default.yaml"))
    settings = load_settings()
    assert settings.registry.root == REPO_ROOT / "models"
    assert settings.infra.state_dir == REPO_ROOT / ".rtml"
    assert settings.infra.cache_dir == REPO_ROOT / ".cache"
    monkeypatch.delenv("RTML_CONFIG")
    defaults = load_settings()
    assert settings.model_dump(exclude={"registry", "infra"}) == defaults.model_dump(
        exclude={"registry", "infra"}
    ), "config/default.yaml repeats the defaults; only its paths differ"


def test_key_precision_is_per_model_and_bounded() -> None:
    settings = load_settings(redis={"key_precision": {"fraud_detector": 2}})
    assert settings.redis.key_precision == {"fraud_detector": 2}
    with pytest.raises(SettingsError, match="key_precision"):
        load_settings(redis={"key_precision": {"fraud_detector": 16}})
