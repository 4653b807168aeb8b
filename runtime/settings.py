"""One frozen settings object per process.

Sources, highest priority first: keyword arguments, ``RTML_*`` environment
variables (nested with ``__``: ``RTML_KAFKA__BOOTSTRAP_SERVERS``), the conventional
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``, the YAML file named by ``RTML_CONFIG``
(none when unset; relative paths in it resolve against its directory), then field
defaults. Directories default to per-user XDG locations, never the installed package.

Refused, each with a message naming the key (:class:`SettingsError` from :func:`load_settings`):
a YAML key or ``RTML_*`` variable that names no setting (``RTML_CONFIG``, ``RTML_URL`` and
``RTML_API_KEY`` are not settings and are let through); values out of range; pairs that
disagree (a default timeout over the maximum, a drift window that is not whole steps, ...);
and with ``env: production``, the developer defaults listed in
:data:`runtime.settings_checks.PRODUCTION_EXPLICIT` (all of them named in one error).
:mod:`runtime.settings_sources` reads the sources; :mod:`runtime.settings_checks` holds the
rules between fields.

Build it in ``main()`` with :func:`load_settings`, never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from runtime import settings_checks as checks
from runtime import tracing
from runtime.errors import SettingsError
from runtime.settings_sources import (
    ConventionalEnvSource,
    config_file,
    describe,
    read_config,
    refuse_unknown,
    unknown_env_vars,
    xdg_dir,
)

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(BaseModel):
    model_config = _FROZEN

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of Kafka brokers."""
    request_topic_prefix: str = "rtml.requests."
    """Request topic of model NAME is this prefix + NAME."""
    reply_topic_prefix: str = "rtml.replies."
    """Each gateway instance owns the reply topic prefix + its instance id."""
    predictions_topic: str = "rtml.predictions"
    """Append-only log of every prediction made (HTTP and direct Kafka)."""
    dlq_topic: str = "rtml.dlq"
    """Dead-letter topic: messages that could not be decoded, validated or served."""
    control_topic: str = "rtml.control"
    """Compacted topic of every model's serving policy (default version, split, shadow): every
    gateway and worker follows it (runtime/control.py)."""
    model_events_topic: str = "rtml.model-events"
    """One event per lifecycle change (promoted, rolled back, retired, traffic), for subscribers."""
    artifacts_topic: str = "rtml.artifacts"
    """Compacted topic of model artifacts in checksummed chunks: a worker or gateway on another
    machine fetches every version the control plane records from here (runtime/artifacts.py)."""
    request_partitions: int = Field(default=4, ge=1)
    """Partitions of each request topic: the upper bound on workers per model."""
    log_partitions: int = Field(default=4, ge=1)
    """Partitions of the prediction-log and dead-letter topics."""
    fetch_wait_max_ms: int = Field(default=2000, ge=0, le=10000)
    """fetch.wait.max.ms of the request and reply consumers: how long the broker may hold an
    empty fetch. The broker answers a held fetch as soon as data arrives, so this bounds idle
    fetch traffic, not latency: at 5 ms every idle consumer cost the broker 200 fetches a second
    (half a core for `make run`'s stack), at 500 ms two, at 2000 ms one every 2 s (the idle broker
    2.6-2.9% of a core against 3.2-4.1% at 500, bench/RESULTS.md). What it does delay: a partition
    newly assigned to a consumer whose other partitions are idle joins its next fetch, up to this
    long later, and metadata requests on the fetch connection queue behind a held fetch."""
    delivery_timeout_ms: int = Field(default=30000, ge=1000)
    """message.timeout.ms of the durable producers (log, dead letters, alert dead letters): a write
    unacknowledged by then fails. The worker's waits for acknowledgements derive from it."""
    replication_factor: int = Field(default=1, ge=1)
    """Replication factor for topics rtml creates."""
    security: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra librdkafka properties (security.protocol, sasl.*, ssl.*) applied to every client, the
    drift app's Faust clients included. Values are masked in repr and logs (sasl.password is one)."""

    def request_topic(self, model: str) -> str:
        return f"{self.request_topic_prefix}{model}"

    def security_properties(self) -> dict[str, str]:
        """``security`` with its values revealed, for handing to a client and nothing else."""
        return {key: value.get_secret_value() for key, value in self.security.items()}


class RedisSettings(BaseModel):
    model_config = _FROZEN

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """Redis URL; may carry a password, so it is masked in repr and logs."""
    enabled: bool = True
    """Turn the prediction cache off entirely."""
    ttl_s: int = Field(default=300, ge=1)
    """Lifetime of a cached prediction."""
    socket_timeout_ms: int = Field(default=50, ge=1)
    """A slower Redis answer counts as an outage; the request goes on uncached."""
    retry_after_s: float = Field(default=1.0, ge=0)
    """After an outage, skip the cache for this long before trying Redis again."""
    key_prefix: str = "rtml:p:"
    """Namespace of cache keys."""
    cache_direct_requests: bool = False
    """Whether requests produced straight to Kafka (``source: kafka``) use the prediction cache
    too: looked up (unless ``use_cache`` is false) and stored. Off by default, as Triton and KServe
    make a response cache opt-in: event features rarely repeat, and caching a row costs Redis and
    the worker more than predicting it (bench/RESULTS.md). Requests from the gateway always use it."""
    keys_prefix: str = "rtml:keys:"
    """Namespace of API keys: only SHA-256 hashes of the keys are stored, shared by every gateway."""
    limits_prefix: str = "rtml:rl:"
    """Namespace of the shared rate-limit state (one small key per limited API key or model)."""
    fleet_prefix: str = "rtml:fleet:"
    """Namespace of the fleet heartbeats (which process has which versions loaded, and the rows
    each version served in the last minute) that ``rtml models status`` reads."""
    key_precision: dict[str, int] = Field(default_factory=dict)
    """Per model, decimals the features are rounded to before hashing, so near-identical inputs
    share a cached answer (e.g. ``{"fraud_detector": 2}``; off for models not listed). The answer
    served is the one computed for the first such input: use only where that is acceptable."""

    @field_validator("key_precision")
    @classmethod
    def _precision_in_range(cls, value: dict[str, int]) -> dict[str, int]:
        wrong = {model: digits for model, digits in value.items() if not 0 <= digits <= 15}
        if wrong:
            raise ValueError(f"key_precision must be 0-15 decimals per model; got {wrong}")
        return value


class GatewaySettings(BaseModel):
    model_config = _FROZEN

    host: str = "127.0.0.1"
    """Address the HTTP server binds."""
    port: int = Field(default=8080, ge=0, le=65535)
    """HTTP port."""
    instance_id: str | None = None
    """Stable id of this gateway (names its reply topic); default hostname-pid."""
    default_timeout_ms: int = Field(default=5000, ge=1)
    """Deadline of a request that does not set timeout_ms."""
    max_timeout_ms: int = Field(default=60000, ge=1)
    """Largest timeout_ms a caller may ask for."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Larger request bodies are refused with 413. Keep it under the broker's message.max.bytes
    (1 MB by default): a request travels as one Kafka message of about the body's size."""
    max_batch_rows: int = Field(default=10000, ge=1)
    """Largest features_batch accepted by batch_predict."""
    delete_reply_topic_on_shutdown: bool = True
    """Remove this instance's reply topic on graceful shutdown (else the other gateways' janitors
    delete it once it has been silent for reply_topic_orphan_after_s, unless this id comes back)."""
    reply_topic_gc_interval_s: float = Field(default=60.0, ge=0)
    """How often this gateway looks for the reply topics of gateways that are gone (killed, scaled
    away) and deletes them (gateway/reply_janitor.py); 0: never. Its own heartbeat runs regardless."""
    reply_topic_orphan_after_s: float = Field(default=300.0, ge=5)
    """A reply topic whose gateway has not heartbeated for this long is deleted by any gateway's
    janitor or ``rtml gateway gc-reply-topics``; each gateway heartbeats every sixth of it (at most
    10 s apart). At least max_timeout_ms: a gateway silent this long has no request in its deadline."""
    keep_alive_s: int = Field(default=75, ge=1)
    """Idle HTTP keep-alive. Longer than the idle timeout of the load balancer or client pool in
    front (60 s on most), so the server never closes a connection a client is about to reuse: that
    race resets the connection and the caller sees a transport error instead of an answer."""
    backlog: int = Field(default=2048, ge=1)
    """Listen backlog (connections accepted by the kernel before the server takes them)."""
    coalesce_delay_us: int = Field(default=4000, ge=0, le=100_000)
    """Under load (8 or more requests awaiting replies), hold a new request up to this long so
    more requests for its model share its Kafka message (gateway/coalesce.py): evenly spread
    arrivals otherwise go one per message and double the CPU per request. 0: always send at the
    end of the event-loop iteration. A lightly loaded gateway never waits."""
    processes: int = Field(default=1, ge=1, le=64)
    """Gateway processes sharing the port (SO_REUSEPORT: the kernel spreads connections), each
    with its own reply topic (instance id ``<instance_id>-<n>``). One process is one core's worth
    of Python: use one per core the gateway may have (bench/SCALING.md)."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT (set for each process by the supervisor when ``processes`` > 1)."""
    model_rates: dict[str, float] = Field(default_factory=dict)
    """Requests per second per model, shared by every gateway (e.g. ``{"fraud_detector": 500}``);
    models not listed are not limited. Keys have their own rate (``rtml keys create --rate``)."""
    tls_certfile: Path | None = None
    """Serve HTTPS with this certificate (PEM; with its chain). Both this and ``tls_keyfile``, or neither."""
    tls_keyfile: Path | None = None
    """The certificate's private key (PEM). Read at start; never logged."""
    drain_s: float | None = Field(default=None, ge=0, le=300)
    """On SIGTERM, keep serving this long with ``/ready`` answering 503 (so load balancers and
    Kubernetes stop sending new requests), then stop accepting and answer what is in flight before
    exiting. None: 5 s when ``env: production``, else 0 (SIGINT never waits)."""
    durable_hit_log: bool = False
    """Answer a cache hit only once its prediction-log record is acknowledged (acks=all): no hit
    goes unlogged even if the gateway crashes or Kafka is down longer than the producer's timeout,
    at the cost of a broker round trip per hit; an unacknowledged hit is served through a worker
    instead. Off: hits are answered at once and logged in the background (a failure is counted in
    rtml_gateway_log_errors_total)."""
    max_in_flight: int = Field(default=4096, ge=1)
    """Admission control: requests waiting on Kafka at once; beyond it a request is answered 503
    with Retry-After at once, so an overload cannot grow the gateway's memory without bound."""
    auth: Literal["off", "required"] | None = None
    """API keys (``rtml keys create``): ``required`` checks ``Authorization: Bearer KEY`` or
    ``X-API-Key: KEY`` on every endpoint but liveness and readiness; None: required when
    ``env: production``, else off."""

    @model_validator(mode="after")
    def _orphans_outlive_deadlines(self) -> Self:
        if self.reply_topic_orphan_after_s * 1000 < self.max_timeout_ms:
            raise ValueError(
                f"reply_topic_orphan_after_s ({self.reply_topic_orphan_after_s:g}) is shorter than "
                f"max_timeout_ms ({self.max_timeout_ms} ms): a silent gateway's topic could be deleted "
                "while a request on it is still inside its deadline"
            )
        return self

    def drain_seconds(self, env: str) -> float:
        if self.drain_s is not None:
            return self.drain_s
        return 5.0 if env == "production" else 0.0

    def auth_required(self, env: str) -> bool:
        return self.auth == "required" or (self.auth is None and env == "production")

    @model_validator(mode="after")
    def _default_within_max(self) -> Self:
        if self.default_timeout_ms > self.max_timeout_ms:
            raise ValueError(
                f"default_timeout_ms ({self.default_timeout_ms}) exceeds "
                f"max_timeout_ms ({self.max_timeout_ms})"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: set both for HTTPS, or neither")
        return self


class WorkerSettings(BaseModel):
    model_config = _FROZEN

    group_prefix: str = "rtml.workers."
    """Workers of model NAME join consumer group prefix + NAME."""
    exactly_once: bool = False
    """Kafka transactions: each consumed batch's log records, dead letters and offsets are committed
    together, so a ``read_committed`` reader of the log sees exactly one record per request row,
    even across a kill -9 (replies stay outside: a re-served batch's second reply is ignored by
    the gateway). Costs a transaction commit per batch (bench/RESULTS.md)."""
    max_batch_rows: int = Field(default=256, ge=1)
    """Upper bound on rows run through ONNX Runtime in one call."""
    max_batch_delay_ms: float = Field(default=0.0, ge=0)
    """Wait up to this long after the first message for more (0: never wait)."""
    max_batches_in_flight: int = Field(default=8, ge=1)
    """Batches processed while earlier ones await the broker's acknowledgement; beyond this the
    loop waits (bounds memory and what a failed write makes it serve again)."""
    poll_timeout_ms: int = Field(default=500, ge=1)
    """How long an idle worker blocks waiting for the first message: a message ends the wait at
    once, so this only sets how often an idle worker wakes (idle CPU) and how long a stop waits."""
    metrics_host: str = "127.0.0.1"
    """Address of a worker's Prometheus endpoint (0.0.0.0 in containers, for the scraper)."""
    metrics_port: int = Field(default=0, ge=0, le=65535)
    """Prometheus port of a worker process (0: no HTTP metrics endpoint)."""
    malloc_arenas: int = Field(default=2, ge=0)
    """glibc malloc arenas of a worker process (0: glibc's default of 8 per core); fewer arenas
    keep RSS flat under load (rtml/memory.py)."""
    ort_threads: int = Field(default=1, ge=1)
    """ONNX Runtime intra-op threads per session (workers scale by process)."""


class RegistrySettings(BaseModel):
    model_config = _FROZEN

    root: Path = Field(default_factory=lambda: xdg_dir("XDG_DATA_HOME", ".local/share", "models"))
    """Directory holding <name>/<version>/{model.onnx,metadata.json}; default
    $XDG_DATA_HOME/rtml/models (~/.local/share/rtml/models)."""


class InfraSettings(BaseModel):
    model_config = _FROZEN

    state_dir: Path = Field(default_factory=lambda: xdg_dir("XDG_STATE_HOME", ".local/state"))
    """Data, logs and PID files of locally provisioned Kafka and Redis, logs of `rtml run` and
    the drift app's data directory; default $XDG_STATE_HOME/rtml (~/.local/state/rtml)."""
    cache_dir: Path = Field(default_factory=lambda: xdg_dir("XDG_CACHE_HOME", ".cache"))
    """Downloaded Kafka jars (kept across runs); default $XDG_CACHE_HOME/rtml (~/.cache/rtml)."""
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    """Port of the local Kafka broker listener (127.0.0.1)."""
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    """Port of the local KRaft controller listener."""
    redis_port: int = Field(default=6379, ge=1, le=65535)
    """Port of the local Redis server."""

    @model_validator(mode="after")
    def _distinct_ports(self) -> Self:
        ports = {"kafka_port": self.kafka_port, "kafka_controller_port": self.kafka_controller_port}
        ports["redis_port"] = self.redis_port
        if len(set(ports.values())) < len(ports):
            raise ValueError(f"the local services need three different ports; got {ports}")
        return self


class DriftThreshold(BaseModel):
    model_config = _FROZEN

    warning: float = Field(ge=0)
    """Over this (and significant after the multiple-testing correction) counts as drift."""
    critical: float = Field(ge=0)
    """Over this the alert's severity is critical."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.warning > self.critical:
            raise ValueError(f"warning ({self.warning}) exceeds critical ({self.critical})")
        return self


class DriftThresholds(BaseModel):
    """Alerting thresholds per statistic; None: computed and exported, never alerted on."""

    model_config = _FROZEN

    psi: DriftThreshold | None = DriftThreshold(warning=0.1, critical=0.2)
    """Population stability index of feature bins and of the output distribution."""
    js_distance: DriftThreshold | None = None
    """Jensen-Shannon distance (base 2) on the same bins."""
    mean_shift: DriftThreshold | None = DriftThreshold(warning=0.5, critical=1.0)
    """|window mean - baseline mean| in baseline standard deviations."""
    missing_rate: DriftThreshold | None = DriftThreshold(warning=0.05, critical=0.2)
    """Increase of the missing (null/NaN) rate over the baseline's."""
    out_of_range_rate: DriftThreshold | None = DriftThreshold(warning=0.05, critical=0.2)
    """Share of values outside the baseline's [min, max]."""


class DriftModelSettings(BaseModel):
    """Per-model overrides of DriftSettings; None inherits the default."""

    model_config = _FROZEN

    enabled: bool = True
    """False: the drift app skips this model's records."""
    window_s: float | None = Field(default=None, gt=0)
    """Sliding window length (a multiple of step_s)."""
    step_s: float | None = Field(default=None, gt=0)
    """Hop between window evaluations."""
    min_samples: int | None = Field(default=None, ge=1)
    """Fewer records in a window: no verdict for that step."""
    debounce_steps: int | None = Field(default=None, ge=1)
    """Consecutive steps over threshold to fire, and under it to resolve."""
    thresholds: DriftThresholds | None = None
    """Replaces the default thresholds for this model."""


class DriftSettings(BaseModel):
    model_config = _FROZEN

    app_id: str = "rtml-drift"
    """Faust app id: its consumer group and the prefix of its table changelog topics."""
    reader_group: str = "rtml.drift.reader"
    """Consumer group reading the prediction log."""
    partials_topic: str = "rtml.drift.partials"
    """Per-batch aggregates keyed by model and version; the source of the drift tables."""
    alerts_topic: str = "rtml.drift.alerts"
    """DriftAlert records, one per state change."""
    dead_letter_topic: str = "rtml.drift.alerts.dlq"
    """Alerts the forwarder could not deliver after its retries."""
    partitions: int = Field(default=4, ge=1)
    """Partitions of the partials topic and of the table changelogs (they must match)."""
    window_s: float = Field(default=300.0, gt=0)
    """Sliding window length (a multiple of step_s)."""
    step_s: float = Field(default=30.0, gt=0)
    """Hop between window evaluations; windows are built from per-step sub-histograms."""
    allowed_lateness_s: float = Field(default=5.0, ge=0)
    """A window is evaluated once event time has passed its end by this much."""
    min_samples: int = Field(default=500, ge=1)
    """Fewer records in a window: no verdict for that step."""
    debounce_steps: int = Field(default=3, ge=1)
    """Consecutive steps over threshold to fire, and under it to resolve."""
    resolve_ratio: float = Field(default=0.8, gt=0, le=1)
    """Hysteresis: a firing alert counts as under only below resolve_ratio x its threshold."""
    family_alpha: float = Field(default=0.01, gt=0, lt=1)
    """Holm-corrected significance level over all statistics of one model window."""
    thresholds: DriftThresholds = DriftThresholds()
    """Alerting thresholds per statistic."""
    models: dict[str, DriftModelSettings] = Field(default_factory=dict)
    """Per-model overrides, by model name."""
    max_batch_records: int = Field(default=10000, ge=1)
    """Prediction-log records aggregated per batch (one table update per key per batch)."""
    poll_timeout_ms: int = Field(default=200, ge=1)
    """How long the log reader waits for a batch to fill."""
    registry_refresh_s: float = Field(default=30.0, gt=0)
    """How often new model versions and baselines are picked up."""
    metrics_host: str = "127.0.0.1"
    """Address of the drift app's Prometheus endpoint."""
    metrics_port: int = Field(default=0, ge=0, le=65535)
    """Prometheus port of the drift app (0: no HTTP metrics endpoint)."""
    redis_prefix: str = "rtml:drift:"
    """Latest window statistics per model live at this prefix + model name (a hash by version)."""
    redis_ttl_s: int = Field(default=3600, ge=1)
    """Lifetime of the published drift state after its last update."""
    forward_group: str = "rtml.drift.forwarder"
    """Consumer group of `rtml alerts forward`."""
    slack_webhook_url: SecretStr | None = None
    """Slack incoming webhook for `rtml alerts forward` (masked in repr and logs)."""
    pagerduty_routing_key: SecretStr | None = None
    """PagerDuty Events API v2 integration key (masked in repr and logs)."""
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    """PagerDuty Events API v2 endpoint."""
    forward_max_attempts: int = Field(default=6, ge=1)
    """Deliveries tried per alert and destination before it is dead-lettered."""
    forward_backoff_s: float = Field(default=0.5, ge=0)
    """First retry delay; doubled per attempt (with jitter) up to forward_max_backoff_s."""
    forward_max_backoff_s: float = Field(default=30.0, ge=0)
    """Longest delay between two delivery attempts."""
    forward_timeout_s: float = Field(default=10.0, gt=0)
    """HTTP timeout of one delivery attempt."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        checks.refuse(checks.drift_problems(self))
        return self


class TracingSettings(BaseModel):
    """OpenTelemetry tracing (runtime/tracing.py); needs the ``tracing`` extra (``rtml[tracing]``)."""

    model_config = _FROZEN

    enabled: bool = False
    """Trace HTTP predictions through Kafka to the worker: one trace per request, its W3C context in
    the Kafka message and its trace id in every PredictionRecord. Off: no span, no context, no
    OpenTelemetry import (decided once at start-up)."""
    exporter: Literal["otlp", "none"] = "otlp"
    """``otlp``: OTLP over HTTP/protobuf to ``endpoint``; ``none``: propagate contexts and record trace
    ids without exporting spans."""
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    """OTLP/HTTP traces endpoint (a collector, Jaeger, Tempo ...): the full URL, path included."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra HTTP headers of every export (an API key, say); values masked in repr and logs."""
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    """Timeout of one export request."""
    service_name: str | None = None
    """``service.name`` of this process's spans; None: ``rtml-gateway`` or ``rtml-worker`` (the
    process kind; the drift app makes no spans)."""
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """Share of new traces recorded (a trace id ratio); a request arriving with a W3C ``traceparent``
    follows its caller's sampling decision."""
    export_delay_ms: int = Field(default=5000, ge=1, le=60_000)
    """Finished spans are batched and exported at most this long after they end."""
    max_queue_size: int = Field(default=2048, ge=1)
    """Finished spans held for export; beyond it new spans are dropped (never a wait on the hot path)."""

    def header_values(self) -> dict[str, str]:
        """``headers`` revealed, for the exporter and nothing else."""
        return {key: value.get_secret_value() for key, value in self.headers.items()}

    @model_validator(mode="after")
    def _installed(self) -> Self:
        if self.enabled and not tracing.installed(self.exporter):
            raise ValueError(tracing.MISSING_EXTRA)
        return self


class Settings(BaseSettings):
    """Everything one rtml process reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="RTML_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    env: Literal["development", "test", "production"] = "development"
    """Deployment environment; production refuses unsafe defaults."""
    log_level: str = "INFO"
    """Root log level."""
    log_json: bool = True
    """Emit JSON lines (False: human-readable)."""
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    gateway: GatewaySettings = GatewaySettings()
    worker: WorkerSettings = WorkerSettings()
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    infra: InfraSettings = Field(default_factory=InfraSettings)
    drift: DriftSettings = DriftSettings()
    tracing: TracingSettings = TracingSettings()

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        checks.refuse(checks.topic_problems(self) + checks.production_problems(self))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_file(os.environ)
        data, problems = read_config(settings_cls, path) if path else ({}, [])
        refuse_unknown(unknown_env_vars(settings_cls, os.environ) + problems)
        yaml_source = InitSettingsSource(settings_cls, data)
        return init_settings, env_settings, ConventionalEnvSource(settings_cls, os.environ), yaml_source


def load_settings(**overrides: Any) -> Settings:
    """Build the process's settings; call once from ``main()``. Raises :class:`SettingsError`
    naming every offending key. Reads the environment, never writes it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
