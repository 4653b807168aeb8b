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
from gateway.cache import GatewayCache
from gateway.model_table import ModelTable
from gateway.replies import ReplyRouter
from gateway.service import PredictionService
from runtime.drift_state import aread_drift_state
from runtime.errors import DriftStateMissing, RtmlError, Unavailable
from runtime.kafka import (
    REQUEST_PRODUCER,
    PolledProducer,
    delete_topics,
    ensure_topics,
    gateway_topics,
    reply_topic,
)
from runtime.memory import freeze_startup_objects
from runtime.registry import ModelRegistry
from runtime.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Observation:
    version: str = ""


class GatewayRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance_id = settings.gateway.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.models = ModelTable(ModelRegistry(settings.registry.root).snapshot())
        kafka = settings.kafka
        self.replies = ReplyRouter(kafka, reply_topic(kafka, self.instance_id).name, self.instance_id)
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
        self.service = PredictionService(settings, self.models, self.producer, self.replies, self.cache)
        self._started = time.monotonic()

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.service.bind_loop(loop)
        await asyncio.to_thread(self._ensure_topics)
        await asyncio.to_thread(self.replies.start, loop)
        freeze_startup_objects()  # everything loaded so far lives as long as the process
        log.info("gateway ready", extra={"instance": self.instance_id, "models": self.models.names()})

    def _ensure_topics(self) -> None:
        kafka = self.settings.kafka
        ensure_topics(kafka, gateway_topics(kafka, self.instance_id, self.models.names()))

    async def stop(self) -> None:
        # uvicorn has already stopped accepting and let in-flight requests finish (or time out).
        self.replies.stop()
        await asyncio.to_thread(self.producer.close, 5.0)
        await self.cache.close()
        if self.settings.gateway.delete_reply_topic_on_shutdown:
            await asyncio.to_thread(delete_topics, self.settings.kafka, [self.replies.topic])
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
            label = model if model in self.models.names() else "_unknown"
            metrics.REQUESTS.labels(endpoint, label, observation.version, str(status)).inc()
            metrics.LATENCY.labels(endpoint, label).observe(time.perf_counter() - started)

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if not self.service.kafka_up:
            reasons.append(f"kafka unreachable: {self.producer.health.last_error}")
        if not self.replies.ready:
            reasons.append(f"reply consumer not assigned: {self.replies.failure or 'starting'}")
        if not len(self.models):
            reasons.append(f"no models registered under {self.settings.registry.root}")
        return reasons

    def readiness_details(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "reply_topic": self.replies.topic,
            "models": self.models.names(),
            "cache": "up" if self.cache.available else ("disabled" if not self.cache.enabled else "degraded"),
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
        latest = entry.versions[entry.latest]
        summary: dict[str, Any] = {
            "name": name,
            "latest_version": entry.latest,
            "versions": sorted(entry.versions, key=int),
            "task": latest.task,
            "n_features": latest.n_features,
        }
        if brief:
            return summary
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
