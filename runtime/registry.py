"""Filesystem model registry: ``<root>/<name>/<version>/{model.onnx,metadata.json}``.

A version directory appears complete or not at all: :meth:`ModelRegistry.register`
writes into a hidden temporary directory inside ``root`` and renames it into place.
Directories whose names start with "." or that lack metadata.json are ignored.
Nothing here unpickles anything: models are stored and loaded as ONNX only.

Errors: the :class:`~runtime.errors.RegistryError` branch of :mod:`runtime.errors`
(ModelNotFound, VersionNotFound, VersionExists, InvalidModel, ChecksumMismatch).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runtime.errors import (
    ChecksumMismatch,
    InvalidModel,
    ModelNotFound,
    RegistryError,
    VersionExists,
    VersionNotFound,
)
from schemas.model_metadata import AUTO_VERSION, NAME_PATTERN, VERSION_PATTERN, ModelMetadata

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
_NAME_RE = re.compile(NAME_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)
_MAX_ATTEMPTS = 100


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelRegistry:
    """Models and their versions under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRegistry(root={str(self.root)!r})"

    # -- reading ---------------------------------------------------------------

    def list_models(self) -> list[str]:
        """Names with at least one registered version, sorted."""
        if not self.root.is_dir():
            return []
        names = (p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.match(p.name))
        return sorted(name for name in names if self._version_dirs(name))

    def versions(self, name: str) -> list[str]:
        """Registered versions of ``name`` in numeric order; raises ModelNotFound."""
        found = self._version_dirs(self._check_name(name))
        if not found:
            raise ModelNotFound(f"model '{name}' not found; registered: {self._known_models()}")
        return sorted(found, key=int)

    def latest(self, name: str) -> str:
        return self.versions(name)[-1]

    def resolve(self, name: str, version: str | None = None) -> str:
        """``version`` itself if registered, the latest one for None or "latest"."""
        if version is None or version == "latest":
            return self.latest(name)
        self._version_dir(name, version)
        return version

    def metadata(self, name: str, version: str) -> ModelMetadata:
        path = self._version_dir(name, version) / METADATA_FILE
        try:
            meta = ModelMetadata.from_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise InvalidModel(f"model '{name}' v{version}: unreadable {path}: {exc}") from exc
        if (meta.name, meta.version) != (name, version):
            raise InvalidModel(f"model '{name}' v{version}: {path} describes '{meta.name}' v{meta.version}")
        return meta

    def model_path(self, name: str, version: str) -> Path:
        return self._version_dir(name, version) / MODEL_FILE

    def verify(self, name: str, version: str) -> ModelMetadata:
        """Recompute the ONNX checksum; raises ChecksumMismatch if it changed."""
        meta = self.metadata(name, version)
        path = self.model_path(name, version)
        try:
            actual = sha256_hex(path.read_bytes())
        except OSError as exc:
            raise ChecksumMismatch(f"model '{name}' v{version}: cannot read {path}: {exc}") from exc
        if actual != meta.onnx_sha256:
            raise ChecksumMismatch(
                f"model '{name}' v{version}: {path} has sha256 {actual}, metadata says {meta.onnx_sha256}"
            )
        return meta

    def snapshot(self) -> dict[str, dict[str, ModelMetadata]]:
        """Every readable version of every model; unreadable ones are logged and skipped."""
        table: dict[str, dict[str, ModelMetadata]] = {}
        for name in self.list_models():
            for version in self.versions(name):
                try:
                    table.setdefault(name, {})[version] = self.metadata(name, version)
                except (InvalidModel, VersionNotFound) as exc:  # corrupt, or replaced this instant
                    log.warning("skipping model version: %s", exc, extra={"model": name, "version": version})
        return table

    # -- writing ---------------------------------------------------------------

    def register(self, onnx_bytes: bytes, metadata: ModelMetadata, *, replace: bool = False) -> ModelMetadata:
        """Validate and store a model; returns its metadata with version and checksum set.

        ``metadata.version`` "auto" (or "") takes the next free version; an explicit
        version that exists raises VersionExists unless ``replace`` is true. A
        replaced version is missing for the instant between two renames.
        """
        if metadata.version not in ("", AUTO_VERSION) and not replace:
            self._refuse_existing(metadata.name, metadata.version)
        validate_onnx(onnx_bytes, metadata)
        meta = metadata.with_updates(onnx_sha256=sha256_hex(onnx_bytes))
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{meta.name}-{uuid.uuid4().hex}"
        try:
            tmp.mkdir()
            _write_file(tmp / MODEL_FILE, onnx_bytes)
            return self._publish(tmp, meta, replace)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, tmp: Path, meta: ModelMetadata, replace: bool) -> ModelMetadata:
        model_dir = self.root / meta.name
        model_dir.mkdir(exist_ok=True)
        auto = meta.version in ("", AUTO_VERSION)
        for _attempt in range(_MAX_ATTEMPTS):
            version = self._next_version(meta.name) if auto else meta.version
            final = meta.with_updates(version=version)
            _write_file(tmp / METADATA_FILE, final.to_json().encode())
            target = model_dir / version
            if replace and not auto and target.exists():
                _swap_in(tmp, target)
            elif not _rename_if_absent(tmp, target):
                if auto:
                    continue  # a concurrent register took this version: try the next
                self._refuse_existing(meta.name, version)
                raise VersionExists(f"model '{meta.name}' v{version} already exists")
            _fsync_dir(model_dir)
            log.info("registered model", extra={"model": final.name, "version": version})
            return final
        raise RegistryError(f"model '{meta.name}': no free version after {_MAX_ATTEMPTS} attempts")

    # -- helpers ---------------------------------------------------------------

    def _next_version(self, name: str) -> str:
        # Count every numeric entry, even one without metadata.json: its name is taken.
        existing = [int(p.name) for p in (self.root / name).iterdir() if _VERSION_RE.match(p.name)]
        return str(max(existing, default=0) + 1)

    def _refuse_existing(self, name: str, version: str) -> None:
        target = self.root / name / version
        if target.exists():
            known = ", ".join(sorted(self._version_dirs(name), key=int)) or "none"
            raise VersionExists(f"model '{name}' v{version} already exists at {target}; versions: {known}")

    def _version_dirs(self, name: str) -> list[str]:
        model_dir = self.root / name
        if not model_dir.is_dir():
            return []
        return [
            p.name for p in model_dir.iterdir() if _VERSION_RE.match(p.name) and (p / METADATA_FILE).is_file()
        ]

    def _version_dir(self, name: str, version: str) -> Path:
        known = self.versions(name)
        if version not in known:
            raise VersionNotFound(f"model '{name}' has no version '{version}'; versions: {', '.join(known)}")
        return self.root / name / version

    def _check_name(self, name: str) -> str:
        if not _NAME_RE.match(name):
            known = self._known_models()
            raise ModelNotFound(f"model {name!r} not found (not a valid model name); registered: {known}")
        return name

    def _known_models(self) -> str:
        return ", ".join(self.list_models()) or "none"


def validate_onnx(onnx_bytes: bytes, meta: ModelMetadata) -> None:
    """Check the model, then run it once on zeros; raises InvalidModel."""
    # Imported here: the gateway reads the registry but must not carry onnx/onnxruntime in memory.
    import numpy as np
    import onnx
    import onnxruntime as ort

    where = f"model '{meta.name}'"
    try:
        onnx.checker.check_model(onnx.load_model_from_string(onnx_bytes))
        session = ort.InferenceSession(onnx_bytes, _session_options(ort), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnx and onnxruntime raise many unrelated types
        raise InvalidModel(f"{where}: not a valid ONNX model: {exc}") from exc
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != [meta.input_name]:
        raise InvalidModel(f"{where}: ONNX inputs are {inputs}; metadata declares [{meta.input_name!r}]")
    missing = [name for name in meta.output_names if name not in outputs]
    if missing:
        raise InvalidModel(f"{where}: declared outputs {missing} not in the ONNX outputs {outputs}")
    zeros = np.zeros((1, meta.n_features), dtype=np.float32)
    try:
        results = session.run(meta.output_names or None, {meta.input_name: zeros})
    except Exception as exc:
        raise InvalidModel(f"{where}: trial run on zeros [1, {meta.n_features}] failed: {exc}") from exc
    _check_trial_outputs(meta, dict(zip(meta.output_names, results, strict=False)))


def _check_trial_outputs(meta: ModelMetadata, results: dict[str, Any]) -> None:
    where = f"model '{meta.name}'"
    for name, value in results.items():
        if value.shape[:1] != (1,):
            raise InvalidModel(f"{where}: output {name!r} has shape {value.shape} for one input row")
    if meta.output_probabilities and meta.classes is not None:
        shape = results[meta.output_probabilities].shape
        if shape != (1, len(meta.classes)):
            raise InvalidModel(
                f"{where}: output {meta.output_probabilities!r} has shape {shape}; "
                f"expected (1, {len(meta.classes)}) for classes {meta.classes}"
            )


def _session_options(ort: Any) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return options


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _rename_if_absent(src: Path, dst: Path) -> bool:
    """Atomically move directory ``src`` to ``dst``; False if ``dst`` already exists."""
    if dst.exists():
        return False
    try:
        os.rename(src, dst)  # fails on a non-empty dst: never merges into another writer's version
    except OSError:
        if dst.exists():
            return False
        raise
    return True


def _swap_in(src: Path, dst: Path) -> None:
    trash = dst.parent / f".old-{dst.name}-{uuid.uuid4().hex}"
    os.rename(dst, trash)
    try:
        os.rename(src, dst)
    except OSError:
        os.rename(trash, dst)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
