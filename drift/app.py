"""``rtml drift``: the faust-streaming app that turns the prediction log into drift alerts.

- :class:`IngestService` (a mode service started with the app) reads the log in
  batches (:mod:`drift.ingest`) and sends one partial aggregate per (model,
  version, step) per batch to ``drift.partials_topic``, keyed ``model|version``;
  it commits the log offsets only once those are acknowledged.
- The ``detect`` agent consumes the partials (co-partitioned with both tables,
  so each model version lives in exactly one partition and one instance) and
  runs :class:`drift.detector.Detector` over two changelog-backed tables: the
  per-step sub-histograms and the per-model state (watermark, alert states). A
  restart restores both from their changelogs.
- Alerts go to ``drift.alerts_topic``; statistics to Prometheus and Redis.

Faust traps handled here: the partials topic and the changelogs share
``drift.partitions``; the web server is disabled *and* bound to 127.0.0.1; the
data directory lives under ``infra.state_dir``, not the working directory.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import mode
from confluent_kafka import KafkaException
from faust.types import StreamT

from drift import metrics
from drift.config import Catalog
from drift.detector import Detector, Outcome, Partial
from drift.ingest import Batch, LogReader
from drift.kafka_auth import faust_credentials
from drift.probes import DriftProbes
from drift.state import version_state
from runtime.drift_state import StatePublisher
from runtime.errors import DriftConfigError, TotalsMismatch
from runtime.kafka import STATE_TABLE, STEPS_TABLE, drift_topics, ensure_topics
from runtime.probe_server import serve_probes
from runtime.registry import ModelRegistry
from runtime.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0
GC_THRESHOLD = 100_000
_RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


class IngestService(mode.Service):
    """Prediction log -> partial aggregates, one batch at a time."""

    def __init__(self, drift_app: DriftApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drift_app = drift_app
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="drift-reader")
        self._reader: LogReader | None = None
        self._finished = asyncio.Event()

    async def on_start(self) -> None:
        settings, catalog = self.drift_app.settings, self.drift_app.catalog
        self._reader = await self._in_thread(LogReader, settings, catalog)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @mode.Service.task
    async def _run(self) -> None:
        try:
            while not self.should_stop and self._reader is not None:
                self._reader.catalog = self.drift_app.catalog
                batch: Batch = await self._in_thread(self._reader.poll)
                self.drift_app.probes.polled()
                await self._publish(batch)
        except Exception as exc:
            log.exception("drift log reader failed; stopping the app")
            await self.crash(exc)
        finally:
            self._finished.set()

    async def _publish(self, batch: Batch) -> None:
        topic = self.drift_app.partials
        pending = [await topic.send(key=p.key, value=p.encode()) for p in batch.partials]
        for delivery in pending:
            await delivery
        if self._reader is None:
            return
        try:
            await self._in_thread(self._reader.commit, batch.offsets)
        except KafkaException as exc:  # a rebalance took the partitions: the new owner re-reads them
            metrics.ERRORS.labels("commit").inc()
            log.warning("could not commit prediction-log offsets: %s", exc)

    async def on_stop(self) -> None:
        try:
            await asyncio.wait_for(self._finished.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("drift log reader did not finish its batch in time")
        if self._reader is not None:
            await self._in_thread(self._reader.close)
        self._pool.shutdown(wait=False)


class DriftApp:
    """The Faust app, its topics and tables, and the detector they feed."""

    def __init__(self, settings: Settings, probes: DriftProbes | None = None) -> None:
        self.settings = settings
        self.probes = probes or DriftProbes()
        """The ingest loop's heartbeat, for /health and /ready (drift/probes.py)."""
        self.registry = ModelRegistry(settings.registry.root)
        self.catalog = Catalog.build(self.registry.snapshot(), settings.drift)
        self.detector = Detector(self.catalog)
        self.publisher = _state_publisher(settings)
        self.faust = _faust_app(settings)
        drift = settings.drift
        self.partials = self.faust.topic(
            drift.partials_topic, key_type=bytes, value_type=bytes, partitions=drift.partitions, **_RAW
        )
        self.alerts = self.faust.topic(drift.alerts_topic, key_type=bytes, value_type=bytes, **_RAW)
        # Their changelogs are listed in the topic table (runtime/kafka/topics.py); Faust creates them.
        self.steps = self.faust.Table(
            STEPS_TABLE, key_type=str, value_type=bytes, partitions=drift.partitions
        )
        self.states = self.faust.Table(
            STATE_TABLE, key_type=str, value_type=bytes, partitions=drift.partitions
        )
        self.faust.agent(self.partials, name="drift-detect")(self._detect)
        self.faust.timer(drift.registry_refresh_s)(self._refresh)
        self.faust.task(self._start_ingest)

    async def _start_ingest(self) -> None:
        await self.faust.add_runtime_dependency(
            IngestService(self, loop=self.faust.loop, beacon=self.faust.beacon)
        )

    async def _detect(self, stream: StreamT[bytes]) -> None:
        async for value in stream:
            outcome = self._on_partial(value)
            if outcome is not None:
                await self._emit(outcome)

    def _on_partial(self, value: bytes) -> Outcome | None:
        try:
            partial = Partial.decode(value)
            outcome = self.detector.on_partial(partial, self.steps, self.states)
        except TotalsMismatch as exc:
            metrics.PARTIALS.labels("bad_partial").inc()
            log.warning("skipping a partial aggregate: %s", exc)
            return None
        metrics.PARTIALS.labels(outcome.skipped or "used").inc()
        if outcome.late_records:
            metrics.RECORDS.labels("late").inc(outcome.late_records)
        return outcome

    async def _emit(self, outcome: Outcome) -> None:
        plan = outcome.plan
        if plan is None or not outcome.reports:
            return
        for alert in outcome.alerts:
            log.info(
                alert.message,
                extra={"model": plan.model, "version": plan.version, "alert_id": alert.alert_id},
            )
            await self.alerts.send(key=alert.alert_id.encode(), value=alert.model_dump_json().encode())
        for report in outcome.reports:
            metrics.observe_report(report)
        metrics.observe_alerts(plan.model, plan.version, outcome.alerts, outcome.firing)
        if self.publisher is not None:
            state = version_state(plan, outcome.reports[-1], outcome.firing, self.detector.clock())
            if not await self.publisher.publish(state):
                metrics.ERRORS.labels("redis").inc()

    async def _refresh(self) -> None:
        try:
            snapshot = await asyncio.to_thread(self.registry.snapshot)
            catalog = Catalog.build(snapshot, self.settings.drift)
        except (OSError, DriftConfigError) as exc:
            metrics.ERRORS.labels("registry").inc()
            log.warning("keeping the previous model catalog: %s", exc)
            return
        self.catalog = catalog
        self.detector.catalog = catalog


def _faust_app(settings: Settings) -> faust.App:
    drift = settings.drift
    hosts = [f"kafka://{host.strip()}" for host in settings.kafka.bootstrap_servers.split(",")]
    datadir = settings.infra.state_dir / "drift" / drift.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return faust.App(
        drift.app_id,
        broker=hosts,
        store="memory://",
        autodiscover=False,
        datadir=str(datadir),
        topic_partitions=drift.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        web_bind="127.0.0.1",
        web_port=6066,
        broker_credentials=faust_credentials(settings.kafka.security_properties()),
        **_RAW,
    )


def _state_publisher(settings: Settings) -> StatePublisher | None:
    if not settings.redis.enabled:
        return None
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        settings.redis.url.get_secret_value(), socket_timeout=1.0, socket_connect_timeout=1.0
    )
    return StatePublisher(client, settings.drift.redis_prefix, settings.drift.redis_ttl_s)


def run_drift(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    ensure_topics(settings.kafka, drift_topics(settings))
    probes = DriftProbes()
    if settings.drift.metrics_port:  # /metrics, /health and /ready
        serve_probes(probes, settings.drift.metrics_host, settings.drift.metrics_port)
    for name in ("aiokafka", "faust", "mode"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    app = DriftApp(settings, probes)
    gc.freeze()  # start-up objects leave the collected generations
    gc.set_threshold(GC_THRESHOLD, 50, 100)  # a batch allocates ~10 objects per record; collect less often
    worker = faust.Worker(
        app.faust, loglevel=None, override_logging=False, redirect_stdouts=False, quiet=True
    )
    worker.spinner = None  # no terminal escape codes in JSON logs
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
