"""A single-node Apache Kafka (KRaft, broker+controller in one JVM) without Docker.

The jars come from Maven Central through ``rtml/infra/kafka-pom.xml`` (in the wheel; no tarball) and run
as ``java -cp 'libs/*' kafka.Kafka server.properties``. Everything a node writes
(config, data, logs, PID file) sits under its own state directory, so tests can run a
throwaway node on other ports next to the developer's one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rtml.infra import process
from runtime.errors import InfraError, PortInUse, PrerequisiteMissing, StartupFailed
from runtime.settings import Settings

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
POM_FILE = Path(__file__).with_name("kafka-pom.xml")
# Kafka 4.1 pins slf4j-api 1.7.36, but log4j-slf4j2-impl only binds SLF4J 2: see _fix_slf4j.
SLF4J_API = "org.slf4j:slf4j-api:2.0.16"
INSTALL_HINT = (
    "install it with `apt-get install -y openjdk-17-jre-headless maven`, "
    "or set KAFKA_BOOTSTRAP_SERVERS=host:port to use an existing broker"
)
# -XX:-UsePerfData: no hsperfdata file and no 50 ms StatSampler wake-ups in an idle broker
# (jps/jstat cannot see it; jcmd still works).
DEFAULT_JVM_OPTS: tuple[str, ...] = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:-UsePerfData")
# C1 only: ~1.5 s faster start and less JIT CPU; for test brokers, not benchmarks.
QUICK_START_JVM_OPTS: tuple[str, ...] = (*DEFAULT_JVM_OPTS, "-XX:TieredStopAtLevel=1")


@dataclass(frozen=True)
class KafkaNode:
    """Where one local broker lives and listens."""

    state_dir: Path
    port: int
    controller_port: int
    cache_dir: Path
    host: str = "127.0.0.1"
    properties: Mapping[str, str] = field(default_factory=dict)
    """server.properties entries over the defaults: an extra SASL_SSL listener for the security
    tests, say (``listeners`` and ``advertised.listeners`` then list every listener)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaNode:
        infra = settings.infra
        return cls(infra.state_dir / "kafka", infra.kafka_port, infra.kafka_controller_port, infra.cache_dir)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.state_dir / "log4j2.xml"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        """Broker log written by log4j2."""
        return self.state_dir / "logs" / "server.log"

    @property
    def stdout_file(self) -> Path:
        """JVM stdout/stderr: crashes before log4j starts land here."""
        return self.state_dir / "logs" / "kafka.out"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "kafka.pid"

    @property
    def cluster_file(self) -> Path:
        """Cluster id and controller port it was formatted with."""
        return self.state_dir / "cluster.json"


def jars_dir(cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_jars(settings: Settings) -> Path:
    """Download the broker jars into the settings' cache dir unless already there."""
    return ensure_jars_in(settings.infra.cache_dir)


def ensure_jars_in(cache_dir: Path, pom: Path = POM_FILE) -> Path:
    """Jars for ``pom`` under ``cache_dir``; a stamp holding the pom's hash marks them complete."""
    libs = jars_dir(cache_dir)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = libs / ".rtml-complete"
    if _stamp_matches(stamp, digest):
        return libs
    with process.file_lock(libs.parent / ".lock"):
        if _stamp_matches(stamp, digest):
            return libs
        mvn = _require("mvn")
        _require_java()
        log.info("downloading Kafka %s jars into %s (once)", KAFKA_VERSION, libs)
        partial = libs.with_name("libs.partial")
        shutil.rmtree(partial, ignore_errors=True)
        _mvn(
            mvn, pom, "dependency:copy-dependencies", f"-DoutputDirectory={partial}", "-DincludeScope=runtime"
        )
        _fix_slf4j(mvn, pom, partial)
        (partial / stamp.name).write_text(digest)
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
    return libs


def _stamp_matches(stamp: Path, digest: str) -> bool:
    return stamp.is_file() and stamp.read_text() == digest


def _fix_slf4j(mvn: str, pom: Path, libs: Path) -> None:
    """Swap slf4j-api 1.7 for 2.0 when the binding is log4j-slf4j2-impl.

    Otherwise SLF4J 1.7 finds no binding and the broker logs nothing at all (NOP
    logger); adding the 1.x binding instead breaks, because both bindings ship
    ``org.apache.logging.slf4j.Log4jLoggerFactory`` and ``libs/*`` order is arbitrary.
    A no-op once the pom resolves a consistent pair.
    """
    old = sorted(libs.glob("slf4j-api-1.*.jar"))
    if not old or not any(libs.glob("log4j-slf4j2-impl-*.jar")):
        return
    _mvn(mvn, pom, "dependency:copy", f"-Dartifact={SLF4J_API}", f"-DoutputDirectory={libs}")
    for jar in old:
        jar.unlink()


def _mvn(mvn: str, pom: Path, *args: str) -> None:
    argv = [mvn, "-q", "-B", "-f", str(pom), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise InfraError(f"{' '.join(argv)} failed (exit {result.returncode}):\n{output}")


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise PrerequisiteMissing(f"`{program}` not found on PATH (needed for local Kafka): {INSTALL_HINT}")
    return path


def _require_java() -> str:
    """java from JAVA_HOME if set, else PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    return _require("java")


def new_cluster_id() -> str:
    """Same format as ``StorageTool random-uuid`` (URL-safe base64 of 16 random bytes,
    never starting with '-') without paying a JVM start."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def write_config(node: KafkaNode) -> None:
    """Regenerate server.properties and log4j2.xml (edit this code, not the files)."""
    node.state_dir.mkdir(parents=True, exist_ok=True)
    node.config_file.write_text(_server_properties(node))
    node.log4j_file.write_text(_log4j2_xml(node.log_file))


def _server_properties(node: KafkaNode) -> str:
    h, p, c = node.host, node.port, node.controller_port
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
        "advertised.listeners": f"PLAINTEXT://{h}:{p}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "controller.quorum.bootstrap.servers": f"{h}:{c}",
        "log.dirs": str(node.data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Light on a 2-core box: fewer threads, a small log-cleaner buffer (default 128 MiB).
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        # Idle cost (issue 9): the KRaft leader appends a no-op record to the metadata log every
        # 500 ms and checkpoints high watermarks every 5 s, work a single node does not need that
        # often. Only liveness of the metadata log and the checkpoint's freshness after a crash
        # depend on them; both are fine at these values for one node.
        "metadata.max.idle.interval.ms": "5000",
        "replica.high.watermark.checkpoint.interval.ms": "30000",
        **node.properties,
    }
    lines = [f"{key}={value}" for key, value in props.items()]
    return "# Written by rtml.infra.kafka on every start.\n" + "\n".join(lines) + "\n"


def _log4j2_xml(log_file: Path) -> str:
    """File-only logging. shutdownHook=disable: log4j2's own hook otherwise stops
    logging while Kafka's shutdown hook still runs, losing the shutdown lines."""
    name = quoteattr(str(log_file))
    pattern = quoteattr(str(log_file.with_name("server.log.%i")))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName={name} filePattern={pattern}>
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="warn"/>
    <Root level="info"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


def _java_argv(node: KafkaNode, java: str, libs: Path, jvm_opts: Sequence[str], *main: str) -> list[str]:
    return [
        java,
        *jvm_opts,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.log4j_file}",
        f"-Dkafka.logs.dir={node.log_file.parent}",
        "-cp",
        f"{libs}/*",
        *main,
    ]


def format_storage(node: KafkaNode, java: str, libs: Path) -> None:
    """Format the data dir once; later starts reuse it (same cluster id, same data)."""
    if (node.data_dir / "meta.properties").exists():
        _check_formatted_for(node)
        return
    cluster_id = new_cluster_id()
    argv = _java_argv(node, java, libs, ("-Xmx256m",), "kafka.tools.StorageTool", "format")
    argv += ["--standalone", "-t", cluster_id, "-c", str(node.config_file)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise StartupFailed(f"kafka storage format failed:\n{result.stdout}{result.stderr}")
    meta = {"cluster_id": cluster_id, "controller_port": node.controller_port}
    node.cluster_file.write_text(json.dumps(meta) + "\n")
    log.info("formatted %s (cluster id %s)", node.data_dir, cluster_id)


def _check_formatted_for(node: KafkaNode) -> None:
    """The KRaft voter set records the controller endpoint: a new port would never elect."""
    try:
        port = json.loads(node.cluster_file.read_text())["controller_port"]
    except (OSError, ValueError, KeyError):
        return
    if port != node.controller_port:
        raise InfraError(
            f"{node.data_dir} was formatted for controller port {port}, not {node.controller_port}; "
            f"use port {port} again or delete {node.state_dir} to start an empty broker"
        )


def start(node: KafkaNode, *, timeout_s: float = 60.0, jvm_opts: Sequence[str] = DEFAULT_JVM_OPTS) -> str:
    """Start the broker (or find ours running) and return its bootstrap once it serves."""
    began = time.monotonic()
    pid = running_pid(node)
    if pid is not None:
        log.info("kafka already running (pid %d) at %s", pid, node.bootstrap)
        _wait_ready(node, pid, began + timeout_s)
        return node.bootstrap
    pid = _launch(node, jvm_opts)
    try:
        _wait_ready(node, pid, began + timeout_s)
    except InfraError:
        stop(node)
        raise
    log.info("kafka ready at %s after %.1fs", node.bootstrap, time.monotonic() - began)
    return node.bootstrap


def _launch(node: KafkaNode, jvm_opts: Sequence[str]) -> int:
    java = _require_java()
    _require_free_ports(node)
    libs = ensure_jars_in(node.cache_dir)
    write_config(node)
    format_storage(node, java, libs)
    argv = _java_argv(node, java, libs, jvm_opts, "kafka.Kafka", str(node.config_file))
    pid = process.start_detached(argv, pid_file=node.pid_file, log_file=node.stdout_file, cwd=node.state_dir)
    log.info("starting kafka (pid %d) at %s, logs in %s", pid, node.bootstrap, node.log_file)
    return pid


def _require_free_ports(node: KafkaNode) -> None:
    for port in (node.port, node.controller_port):
        if process.port_open(node.host, port):
            raise PortInUse(
                f"{node.host}:{port} is in use by a process rtml did not start; stop it, "
                f"choose other ports (RTML_INFRA__KAFKA_PORT, RTML_INFRA__KAFKA_CONTROLLER_PORT) "
                f"or set KAFKA_BOOTSTRAP_SERVERS to use that broker"
            )


def _wait_ready(node: KafkaNode, pid: int, deadline: float) -> None:
    """Port open first (no client error spam), then a real metadata request."""

    def serving() -> bool:
        return process.port_open(node.host, node.port) and broker_reachable(node.bootstrap, timeout_s=2.0)

    process.wait_for(
        serving, what=f"kafka at {node.bootstrap}", deadline=deadline, pid=pid, log_file=node.log_file
    )


def broker_reachable(bootstrap: str, *, timeout_s: float, extra: dict[str, str] | None = None) -> bool:
    """True when a broker answers a metadata request listing at least one broker."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, **(extra or {})}
    conf["error_cb"] = lambda err: log.debug("kafka client while probing %s: %s", bootstrap, err)
    conf["logger"] = logging.getLogger(f"{__name__}.client")
    try:
        metadata = AdminClient(conf).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def running_pid(node: KafkaNode) -> int | None:
    """PID of our broker for this node, if it runs."""
    return process.running_pid(node.pid_file, str(node.config_file))


def stop(node: KafkaNode, timeout_s: float = 30.0) -> bool:
    """Controlled shutdown by SIGTERM (SIGKILL after ``timeout_s``); True if it ran."""
    stopped = process.stop_process(node.pid_file, str(node.config_file), timeout_s)
    if stopped:
        log.info("stopped kafka at %s", node.bootstrap)
    return stopped
