"""Lifecycle of one gateway process: builds the service's parts, starts and stops them, reports readiness."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from gateway import metrics
from gateway.auth import Authenticator
from gateway.cache import GatewayCache
from gateway.limits import RateLimiter
from gateway.model_table import ModelEntry, ModelTable
from gateway.replies import ReplyRouter
from gateway.reply_janitor import ReplyTopicJanitor, heartbeat_group
from gateway.service import PredictionService
from runtime.artifacts import ArtifactStore
from runtime.canary import CanaryController
from runtime.control import ControlView, ControlWriter
from runtime.drift_state import aread_drift_state
from runtime.errors import DriftStateMissing, RtmlError, Unavailable
from runtime.fleet import FleetReporter
from runtime.kafka import (
    REQUEST_PRODUCER,
    PolledProducer,
    delete_topics,
    ensure_topics,
    gateway_topics,
    reply_topic,
)
from runtime.memory import freeze_startup_objects
from runtime.model_admin import ModelAdmin
from runtime.registry import ModelRegistry
from runtime.settings import Settings
from schemas.control import ModelPolicy
from schemas.model_metadata import ModelMetadata

log = logging.getLogger(__name__)


@dataclass
class Observation:
    version: str = ""


class GatewayRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance_id = settings.gateway.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.registry = ModelRegistry(settings.registry.root)
        self.models = ModelTable(self.registry.snapshot())
        kafka = settings.kafka
        self.control = ControlView(kafka, f"{self.instance_id}-control", on_change=self._policy_changed)
        self._following = False
        self.control_writer = ControlWriter(kafka, f"{self.instance_id}-control-writer")
        self.artifacts = ArtifactStore(kafka, f"{self.instance_id}-artifacts")
        self._remote: dict[tuple[str, str, str], ModelMetadata] = {}
        self.fleet = FleetReporter(
            settings.redis,
            "gateway",
            self.instance_id,
            lambda: {name: [] for name in self.models.names()},
            metrics.SERVED,
        )
        by = f"gateway {self.instance_id}"
        self.admin = ModelAdmin(self.registry, self.control_writer, self.control.policy, by, self.artifacts)
        self.canary = CanaryController(settings.redis, self.instance_id, self.control, self.admin)
        self.replies = ReplyRouter(kafka, reply_topic(kafka, self.instance_id).name, self.instance_id)
        self.janitor = ReplyTopicJanitor(kafka, settings.gateway, self.replies.topic, self.instance_id)
        self.producer = PolledProducer(
            kafka,
            REQUEST_PRODUCER,
            {
                "client.id": f"{self.instance_id}-requests",
                # A request not acknowledged by the longest deadline has no caller left.
                "message.timeout.ms": settings.gateway.max_timeout_ms,
            },
        )
        self.cache = GatewayCache(settings.redis)
        self.auth = Authenticator(
            settings.gateway.auth_required(settings.env), self.cache.client, settings.redis.keys_prefix
        )
        self.limiter = RateLimiter(self.cache.client, settings.redis.limits_prefix)
        self.service = PredictionService(
            settings, self.models, self.producer, self.replies, self.cache, self.limiter
        )
        self._started = time.monotonic()
        self.draining = False
        """Set on SIGTERM (gateway/main.py): /ready answers 503 while what is in flight finishes."""

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.service.bind_loop(loop)
        await asyncio.to_thread(self._ensure_topics)
        # Heartbeat from the moment the reply topic exists, before anything slow: a gateway that
        # takes its time to start is never taken for gone by another gateway's janitor.
        await asyncio.to_thread(self.janitor.start)
        await asyncio.to_thread(self.control.start)
        self._following = True
        await asyncio.to_thread(self.refresh_models)
        await asyncio.to_thread(self._ensure_topics)  # models known only from the control plane
        await asyncio.to_thread(self.replies.start, loop)
        await self.auth.start()
        self.fleet.start()
        self.canary.start()
        freeze_startup_objects()  # everything loaded so far lives as long as the process
        log.info("gateway ready", extra={"instance": self.instance_id, "models": self.models.names()})

    def _ensure_topics(self) -> None:
        kafka = self.settings.kafka
        ensure_topics(kafka, gateway_topics(kafka, self.instance_id, self.models.names()))

    def refresh_models(self) -> None:
        """Fetch versions built on other machines, then re-read the registry and the policies: the
        table every request routes by."""
        policies = self.control.policies()
        snapshot = self.registry.snapshot()
        for policy in policies.values():
            local = snapshot.setdefault(policy.model, {})
            for version, sha in policy.versions.items():
                if version in local or version in policy.retired:
                    continue
                remote = self._remote_metadata(policy.model, version, sha)
                if remote is not None:
                    local[version] = remote
        before = self.models.serving()
        self.models.update({name: versions for name, versions in snapshot.items() if versions}, policies)
        after = self.models.serving()
        for model, version in before - after:  # retired: its series must not linger on dashboards
            metrics.forget_version(model, version)
        for model in self.models.names():
            metrics.start_model(model)

    def _remote_metadata(self, model: str, version: str, sha: str) -> ModelMetadata | None:
        """Metadata of a version built on another machine (cached; the gateway needs no ONNX)."""
        key = (model, version, sha)
        if key not in self._remote:
            try:
                self._remote[key] = self.artifacts.fetch_metadata(model, version, sha)
            except RtmlError as exc:
                log.error(
                    "cannot fetch model metadata",
                    extra={"model": model, "version": version, "error": exc.message},
                )
                return None
        return self._remote[key]

    def _policy_changed(self, policy: ModelPolicy) -> None:
        if self._following:  # at boot, one refresh after the whole topic was read
            self.refresh_models()
            log.info("model policy applied", extra={"model": policy.model, "revision": policy.revision})

    async def stop(self) -> None:
        # uvicorn has already stopped accepting and let in-flight requests finish (or time out).
        await self.auth.stop()
        self.canary.stop()
        self.fleet.stop()
        self.control.stop()
        self.control_writer.close()
        self.replies.stop()
        await asyncio.to_thread(self.producer.close, 5.0)
        await self.cache.close()
        # Heartbeats ran until every request in flight was answered. A topic kept here
        # (delete_reply_topic_on_shutdown: false) goes silent: janitors delete it after the bound.
        await asyncio.to_thread(self.janitor.stop)
        if self.settings.gateway.delete_reply_topic_on_shutdown:
            if self.producer.health.up:
                await asyncio.to_thread(delete_topics, self.settings.kafka, [self.replies.topic])
                await asyncio.to_thread(
                    self.janitor.owners.delete_groups, [heartbeat_group(self.replies.topic)]
                )
            else:  # an admin request would only time out (and librdkafka may abort on that)
                log.warning(
                    "kafka unreachable: reply topic left to the janitors", extra={"topic": self.replies.topic}
                )
        log.info("gateway stopped", extra={"instance": self.instance_id})

    @contextmanager
    def observe(self, endpoint: str, model: str) -> Iterator[Observation]:
        observation = Observation()
        started = time.perf_counter()
        status = 200
        try:
            yield observation
        except RtmlError as exc:
            status = exc.status
            raise
        except Exception:
            status = RtmlError.status  # the transport answers it as an internal error: count it so
            raise
        finally:
            # Only known models get their own label value, so arbitrary names cannot blow up cardinality.
            label = model if model in self.models else "_unknown"
            metrics.REQUEST_SERIES.labels(endpoint, label, observation.version, str(status)).inc()
            metrics.LATENCY_SERIES.labels(endpoint, label).observe(time.perf_counter() - started)

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if self.draining:
            reasons.append("draining: shutting down, finishing the requests in flight")
        if not self.service.kafka_up:
            reasons.append(f"kafka unreachable: {self.producer.health.last_error}")
        if not self.replies.ready:
            reasons.append(f"reply consumer not assigned: {self.replies.failure or 'starting'}")
        if self.auth.enabled and not self.auth.loaded:
            reasons.append(f"API keys not loaded: {self.auth.failure or 'starting'}")
        if not self.control.ready:
            reasons.append(f"control topic not followed: {self.control.failure or 'starting'}")
        if not len(self.models):
            reasons.append(f"no models registered under {self.settings.registry.root}")
        return reasons

    def readiness_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"instance_id": self.instance_id}
        if not self.auth.enabled:  # /ready is public: with keys on, it names no topic
            details["reply_topic"] = self.replies.topic
        return {
            **details,
            "models": self.models.names(),
            "cache": "up" if self.cache.available else ("disabled" if not self.cache.enabled else "degraded"),
            "rate_limits": self.limiter.degraded or "shared through Redis",
        }

    async def drift_state(self, name: str) -> dict[str, Any]:
        """Latest window statistics and firing alerts of ``name``, as the drift app published them."""
        self.models.entry(name)  # 404 listing the models for an unknown name
        try:
            state = await aread_drift_state(self.cache.client, self.settings.drift.redis_prefix, name)
        except RedisError as exc:
            raise Unavailable(f"drift state is kept in Redis, which is unavailable: {exc}") from None
        if state is None:
            raise DriftStateMissing(
                f"no drift statistics for model '{name}' yet: "
                "is `rtml drift` running, and has the model had traffic?"
            )
        return dict(state)

    def describe(self, name: str, brief: bool = False) -> dict[str, Any]:
        entry = self.models.entry(name)
        latest = entry.versions[entry.default or entry.latest]
        summary: dict[str, Any] = {
            "name": name,
            "latest_version": entry.latest,
            "default_version": entry.default,
            "versions": entry.serving,
            "task": latest.task,
            "n_features": latest.n_features,
        }
        if brief:
            return summary
        summary["policy"] = policy_summary(entry)
        summary["feature_names"] = latest.feature_names
        summary["classes"] = latest.classes
        summary["metrics"] = latest.metrics
        summary["version_details"] = {
            version: {
                "created_at": metadata.created_at.isoformat(),
                "framework": metadata.framework,
                "framework_versions": metadata.framework_versions,
                "metrics": metadata.metrics,
                "onnx_sha256": metadata.onnx_sha256,
                "n_features": metadata.n_features,
                "classes": metadata.classes,
            }
            for version, metadata in entry.versions.items()
        }
        return summary


def policy_summary(entry: ModelEntry) -> dict[str, Any]:
    """How the model's traffic is routed (``GET /api/v1/models/{name}``, ``rtml models status``)."""
    policy = entry.policy
    return {
        "default": entry.default,
        "previous": policy.previous if policy else [],
        "retired": policy.retired if policy else [],
        "split": policy.split if policy else {},
        "shadow": policy.shadow if policy else {},
        "canary": policy.canary.model_dump() if policy and policy.canary else None,
        "revision": policy.revision if policy else 0,
        "change": policy.change if policy else "no policy recorded: the highest version serves",
        "updated_at_ms": policy.updated_at_ms if policy else None,
        "updated_by": policy.updated_by if policy else None,
    }
