"""Local Kafka and Redis for development and tests, without Docker.

``up`` starts a single-node KRaft broker (:mod:`rtml.infra.kafka`) and a Redis
server (:mod:`rtml.infra.redis`) as detached processes whose data, logs and PID
files live under ``settings.infra.state_dir``; ``down`` stops them by PID and
``status`` reports them. When ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` (or their
``RTML_*`` forms) are set, that service is external: nothing is started, it is only
checked.

Errors: the :class:`~runtime.errors.InfraError` branch of :mod:`runtime.errors`
(PrerequisiteMissing, PortInUse, StartupFailed, StartupTimeout, NotOurProcess,
ServiceUnreachable).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal, TypedDict
from urllib.parse import urlsplit, urlunsplit

from rtml.infra import kafka, process, redis
from runtime.errors import ServiceUnreachable
from runtime.settings import Settings

__all__ = [
    "InfraEndpoints",
    "ServiceStatus",
    "down",
    "external_kafka",
    "external_redis",
    "mask_url",
    "status",
    "up",
]

log = logging.getLogger(__name__)

KAFKA_ENV = ("RTML_KAFKA__BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")
REDIS_ENV = ("RTML_REDIS__URL", "REDIS_URL")


@dataclass(frozen=True)
class InfraEndpoints:
    """Where clients connect; ``redis_url`` may hold a password, so repr masks it."""

    bootstrap_servers: str
    redis_url: str

    def __repr__(self) -> str:
        masked = mask_url(self.redis_url)
        return f"InfraEndpoints(bootstrap_servers={self.bootstrap_servers!r}, redis_url={masked!r})"


class ServiceStatus(TypedDict):
    source: Literal["local", "external"]
    address: str
    """Bootstrap servers or masked Redis URL."""
    pid: int | None
    """PID of our process (local only)."""
    reachable: bool
    log_file: str | None


def mask_url(url: str) -> str:
    """``redis://:secret@host`` -> ``redis://:***@host`` for logs and repr."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _first_env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def external_kafka() -> str | None:
    """Bootstrap servers from the environment (RTML_* first, like load_settings)."""
    return _first_env(KAFKA_ENV)


def external_redis() -> str | None:
    """Redis URL from the environment (RTML_* first, like load_settings)."""
    return _first_env(REDIS_ENV)


def up(settings: Settings, *, timeout_s: float = 60.0) -> InfraEndpoints:
    """Start what is not external and not already running; idempotent."""
    redis_url = _up_redis(settings, timeout_s)
    bootstrap = _up_kafka(settings, timeout_s)
    return InfraEndpoints(bootstrap_servers=bootstrap, redis_url=redis_url)


def _up_kafka(settings: Settings, timeout_s: float) -> str:
    external = external_kafka()
    if external is None:
        node = kafka.KafkaNode.from_settings(settings)
        _warn_if_differs("kafka.bootstrap_servers", settings.kafka.bootstrap_servers, node.bootstrap)
        return kafka.start(node, timeout_s=timeout_s)
    log.info("kafka: using external broker %s from the environment; not starting one", external)
    if not kafka.broker_reachable(
        external, timeout_s=min(timeout_s, 10.0), extra=settings.kafka.security_properties()
    ):
        raise ServiceUnreachable(
            f"kafka broker {external} (from {KAFKA_ENV[1]}) did not answer a metadata request"
        )
    return external


def _up_redis(settings: Settings, timeout_s: float) -> str:
    external = external_redis()
    if external is None:
        node = redis.RedisNode.from_settings(settings)
        _warn_if_differs("redis.url", settings.redis.url.get_secret_value(), node.url)
        return redis.start(node, timeout_s=timeout_s)
    log.info("redis: using external server %s from the environment; not starting one", mask_url(external))
    if not redis.ping(external, timeout_s=min(timeout_s, 5.0)):
        raise ServiceUnreachable(f"redis at {mask_url(external)} (from {REDIS_ENV[1]}) did not answer PING")
    return external


def _warn_if_differs(field: str, configured: str, local: str) -> None:
    """Clients read settings, not us: say so when they would miss the local service."""
    if configured != local:
        log.warning("settings.%s is %s but the local service is at %s", field, mask_url(configured), local)


def down(settings: Settings) -> None:
    """Stop our local Kafka and Redis (never anything we did not start)."""
    kafka_stopped = kafka.stop(kafka.KafkaNode.from_settings(settings))
    log.info("kafka: %s", "stopped" if kafka_stopped else "was not running")
    redis_stopped = redis.stop(redis.RedisNode.from_settings(settings))
    log.info("redis: %s", "stopped" if redis_stopped else "was not running")


def status(settings: Settings) -> dict[str, ServiceStatus]:
    """What runs where, as a dict for the CLI to print."""
    return {"kafka": _kafka_status(settings), "redis": _redis_status(settings)}


def _kafka_status(settings: Settings) -> ServiceStatus:
    node = kafka.KafkaNode.from_settings(settings)
    external = external_kafka()
    if external is not None:
        reachable = kafka.broker_reachable(
            external, timeout_s=2.0, extra=settings.kafka.security_properties()
        )
        return ServiceStatus(
            source="external", address=external, pid=None, reachable=reachable, log_file=None
        )
    pid = kafka.running_pid(node)
    reachable = process.port_open(node.host, node.port) and kafka.broker_reachable(
        node.bootstrap, timeout_s=2.0
    )
    return ServiceStatus(
        source="local", address=node.bootstrap, pid=pid, reachable=reachable, log_file=str(node.log_file)
    )


def _redis_status(settings: Settings) -> ServiceStatus:
    node = redis.RedisNode.from_settings(settings)
    external = external_redis()
    url = external or node.url
    reachable = redis.ping(url, timeout_s=1.0)
    if external is not None:
        return ServiceStatus(
            source="external", address=mask_url(url), pid=None, reachable=reachable, log_file=None
        )
    pid = redis.running_pid(node)
    return ServiceStatus(
        source="local", address=url, pid=pid, reachable=reachable, log_file=str(node.log_file)
    )
