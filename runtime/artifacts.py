"""Model artifacts on Kafka: how a process on another machine gets a version it has never seen.

Why a compacted topic and not an object store: ``make run`` and every deployment already have
Kafka, and nothing else is shared between machines; compaction keeps every chunk of every
version (distinct keys) for as long as it is not deleted. An object store behind fsspec URIs can
implement the same two calls later (:class:`ArtifactStore` is the seam).

Layout of ``rtml.artifacts`` (one partition, compacted):

- ``<model>/<version>/<sha256>/<index>``: a chunk of ``model.onnx`` (at most :data:`CHUNK_BYTES`,
  under the broker's 1 MB message limit).
- ``<model>/<version>/manifest``: JSON ``{model, version, onnx_sha256, size, chunks, metadata}``,
  written after every chunk was acknowledged, so a reader that finds a manifest finds its chunks.

:meth:`ArtifactStore.fetch` reads the topic once to its end, reassembles the version named by the
manifest, and registers it in the local registry only if the bytes hash to the checksum the
control plane recorded (``ModelPolicy.versions``) *and* the registry's own validation (ONNX check,
trial run) passes: a corrupt or truncated artifact is refused and never replaces anything.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from runtime.errors import (
    ArtifactMissing,
    ChecksumMismatch,
    ModelNotFound,
    RegistryError,
    Unavailable,
    VersionExists,
)
from runtime.kafka import (
    ARTIFACT_READER,
    ARTIFACT_WRITER,
    KafkaProducer,
    artifact_topics,
    ensure_topics,
    new_consumer,
)
from runtime.registry import METADATA_FILE, ModelRegistry
from runtime.settings import KafkaSettings
from schemas.control import ModelPolicy
from schemas.model_metadata import ModelMetadata

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024
READ_TIMEOUT_S = 60.0


class ArtifactStore:
    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._topic = kafka.artifacts_topic

    def publish(self, registry: ModelRegistry, model: str, version: str) -> str:
        """Upload one registered version; returns its ONNX SHA-256."""
        metadata = registry.verify(model, version)  # never ship bytes that fail their own checksum
        onnx = registry.model_path(model, version).read_bytes()
        sha = metadata.onnx_sha256
        chunks = [onnx[i : i + CHUNK_BYTES] for i in range(0, len(onnx), CHUNK_BYTES)] or [b""]
        manifest = {
            "model": model,
            "version": version,
            "onnx_sha256": sha,
            "size": len(onnx),
            "chunks": len(chunks),
            "metadata": (registry.root / model / version / METADATA_FILE).read_text(),
        }
        ensure_topics(self._kafka, artifact_topics(self._kafka))
        producer = KafkaProducer(self._kafka, ARTIFACT_WRITER, {"client.id": self._client_id})
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failures.append(str(error))

        for index, chunk in enumerate(chunks):
            producer.produce(self._topic, chunk, f"{model}/{version}/{sha}/{index:06d}".encode(), delivered)
        timeout_s = producer.delivery_timeout_s + 1
        if producer.flush(timeout_s) or failures:  # the manifest only after every chunk is durable
            raise Unavailable(
                f"artifact chunks of {model} v{version} not acknowledged: {failures or 'timeout'}"
            )
        producer.produce(
            self._topic, orjson.dumps(manifest), f"{model}/{version}/manifest".encode(), delivered
        )
        if producer.flush(timeout_s) or failures:
            raise Unavailable(
                f"artifact manifest of {model} v{version} not acknowledged: {failures or 'timeout'}"
            )
        log.info("artifact published", extra={"model": model, "version": version, "bytes": len(onnx)})
        return sha

    def fetch(self, registry: ModelRegistry, model: str, version: str, expected_sha: str) -> ModelMetadata:
        """Download ``model`` v``version`` into ``registry``; raises ArtifactMissing when the topic has
        no complete copy, ChecksumMismatch when the bytes are not the ones the control plane recorded."""
        manifest, chunks = self._read(model, version, expected_sha)
        if manifest is None:
            raise ArtifactMissing(f"no artifact of model '{model}' v{version} on {self._topic}")
        count = int(manifest["chunks"])
        missing = [i for i in range(count) if i not in chunks]
        if missing:
            raise ArtifactMissing(f"artifact of '{model}' v{version} lacks chunks {missing[:5]} of {count}")
        onnx = b"".join(chunks[i] for i in range(count))
        actual = hashlib.sha256(onnx).hexdigest()
        if actual != expected_sha or manifest["onnx_sha256"] != expected_sha or len(onnx) != manifest["size"]:
            raise ChecksumMismatch(
                f"artifact of '{model}' v{version} has sha256 {actual} ({len(onnx)} bytes); the control "
                f"plane recorded {expected_sha}: refused"
            )
        metadata = ModelMetadata.from_json(manifest["metadata"].encode())
        try:
            registered = registry.register(onnx, metadata.with_updates(version=version))
        except VersionExists:  # fetched concurrently by another thread or process
            registered = registry.verify(model, version)
        if registered.onnx_sha256 != expected_sha:
            raise ChecksumMismatch(f"local copy of '{model}' v{version} differs from the recorded checksum")
        log.info("artifact fetched", extra={"model": model, "version": version, "bytes": len(onnx)})
        return registered

    def fetch_metadata(self, model: str, version: str, expected_sha: str) -> ModelMetadata:
        """Only the metadata of a version (what a gateway routes and validates by): the manifest,
        not the model bytes, so a gateway never loads ONNX tooling for versions built elsewhere."""
        manifest, _chunks = self._read(model, version, expected_sha, with_chunks=False)
        if manifest is None:
            raise ArtifactMissing(f"no artifact of model '{model}' v{version} on {self._topic}")
        if manifest["onnx_sha256"] != expected_sha:
            raise ChecksumMismatch(
                f"artifact manifest of '{model}' v{version} names sha256 {manifest['onnx_sha256']}; "
                f"the control plane recorded {expected_sha}: refused"
            )
        metadata = ModelMetadata.from_json(str(manifest["metadata"]).encode())
        if metadata.onnx_sha256 != expected_sha or (metadata.name, metadata.version) != (model, version):
            raise ChecksumMismatch(f"artifact metadata of '{model}' v{version} does not match its manifest")
        return metadata

    def _read(
        self, model: str, version: str, sha: str, with_chunks: bool = True
    ) -> tuple[dict[str, Any] | None, dict[int, bytes]]:
        manifest_key = f"{model}/{version}/manifest".encode()
        chunk_prefix = f"{model}/{version}/{sha}/".encode()
        consumer = new_consumer(
            self._kafka,
            ARTIFACT_READER,
            {"client.id": self._client_id, "group.id": f"rtml.artifacts.{uuid.uuid4().hex}"},
        )
        manifest: dict[str, Any] | None = None
        chunks: dict[int, bytes] = {}
        deadline = time.monotonic() + READ_TIMEOUT_S
        try:
            consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return manifest, chunks
                    log.warning("artifact topic read error: %s", error)
                    continue
                key, value = message.key() or b"", message.value()
                if key == manifest_key:
                    manifest = orjson.loads(value) if value is not None else None
                elif with_chunks and key.startswith(chunk_prefix) and value is not None:
                    chunks[int(key[len(chunk_prefix) :])] = value
        finally:
            consumer.close()
        raise Unavailable(f"could not read {self._topic} to its end within {READ_TIMEOUT_S:.0f} s")


def fetch_missing(
    store: ArtifactStore | None, registry: ModelRegistry, policy: ModelPolicy | None
) -> list[str]:
    """Fetch every version ``policy`` records that the local registry lacks (retired ones
    excepted); returns those fetched. A version that cannot be fetched or fails its checksum is
    logged and skipped: the process keeps serving what it has."""
    if store is None or policy is None:
        return []
    try:
        local = set(registry.versions(policy.model))
    except ModelNotFound:
        local = set()
    fetched = []
    for version, sha in sorted(policy.versions.items(), key=lambda item: int(item[0])):
        if version in local or version in policy.retired:
            continue
        try:
            store.fetch(registry, policy.model, version, sha)
        except (RegistryError, Unavailable) as exc:
            log.error(
                "cannot fetch model artifact; the version will not serve here",
                extra={"model": policy.model, "version": version, "error": exc.message[:500]},
            )
        else:
            fetched.append(version)
    return fetched
