"""MLflow models: ``models:/NAME/VERSION`` and ``models:/NAME@ALIAS`` from the tracking
server/registry at ``MLFLOW_TRACKING_URI`` (extra ``mlflow``), and local MLflow model
directories. The logged flavour is imported as its own format would be (onnx, sklearn,
keras/tensorflow, pytorch, in that order of preference); the run id, version and alias
are kept in the metadata, and a logged input example seeds the parity sample.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from importers.extras import require
from importers.model import Converted, SampleHints
from runtime.errors import SourceNotFound, UnreadableModel, UnsupportedModel
from schemas.model_metadata import MlflowSource, SourceDetails

if TYPE_CHECKING:
    from importers.api import ImportOptions
    from importers.sources import Loaded

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[\w.-]+))$")
FLAVORS = ("onnx", "sklearn", "keras", "tensorflow", "pytorch")


def load(uri: str, name: str, options: ImportOptions) -> Loaded:
    from importers.sources import Loaded

    match = _URI.match(uri)
    if match is None:
        raise SourceNotFound(f"{uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS")
    mlflow = require("mlflow", "importing from an MLflow registry")
    client = mlflow.MlflowClient()
    entry = _model_version(client, match["name"], match["version"], match["alias"])
    with tempfile.TemporaryDirectory(prefix="rtml-mlflow-") as tmp:
        local = _download(mlflow, f"models:/{entry.name}/{entry.version}", Path(tmp))
        converted, flavor = convert_local(local, name, options)
        from importers.sources import file_sha256

        sha = file_sha256(local)
    source = MlflowSource(
        tracking_uri=_without_credentials(mlflow.get_tracking_uri()),
        model_name=entry.name,
        version=str(entry.version),
        alias=match["alias"],
        run_id=entry.run_id,
        flavor=flavor,
    )
    details = SourceDetails(format=f"mlflow-{flavor}", uri=uri, sha256=sha, mlflow=source)
    return Loaded(replace(converted, source_format=details.format), details)


def convert_local(path: Path, name: str, options: ImportOptions) -> tuple[Converted, str]:
    """A downloaded (or local) MLflow model directory; returns the conversion and the flavour."""
    models = require("mlflow.models", "reading an MLflow model")
    try:
        info = models.Model.load(str(path))
    except Exception as exc:
        raise UnreadableModel(f"{path}: unreadable MLmodel file: {exc}") from exc
    flavor = next((f for f in FLAVORS if f in info.flavors), None)
    if flavor is None:
        raise UnsupportedModel(
            f"MLflow model flavours {sorted(info.flavors)} are not importable; supported: {FLAVORS}"
        )
    converted = _convert_flavor(flavor, path, info, name, options)
    names = _signature_names(info)
    hints = _with_example(converted.hints, info, path, converted.signature.n_features)
    return replace(converted, feature_names=converted.feature_names or names, hints=hints), flavor


def _convert_flavor(flavor: str, path: Path, info: Any, name: str, options: ImportOptions) -> Converted:
    if flavor == "onnx":
        from importers import onnx_source

        data = (path / info.flavors["onnx"]["data"]).read_bytes()
        return onnx_source.convert(data, options.task, options.classes, options.n_features)
    mlflow = require("mlflow", "importing from an MLflow registry")
    try:
        model = getattr(mlflow, flavor).load_model(str(path))
    except Exception as exc:
        raise UnreadableModel(f"MLflow {flavor} model cannot be loaded: {type(exc).__name__}: {exc}") from exc
    from importers.sources import _load_object

    return _load_object(model, name, options).converted


def _model_version(client: Any, model: str, version: str | None, alias: str | None) -> Any:
    exceptions = require("mlflow.exceptions", "importing from an MLflow registry")
    try:
        if alias is not None:
            return client.get_model_version_by_alias(model, alias)
        return client.get_model_version(model, version)
    except exceptions.MlflowException as exc:
        wanted = f"@{alias}" if alias else f"version {version}"
        raise SourceNotFound(f"MLflow model {model!r} {wanted} not found: {exc.message}") from exc


def _download(mlflow: Any, uri: str, target: Path) -> Path:
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    except Exception as exc:
        raise UnreadableModel(f"cannot download {uri}: {type(exc).__name__}: {exc}") from exc


def _signature_names(info: Any) -> list[str] | None:
    if info.signature is None:
        return None
    names = info.signature.inputs.input_names()
    return [str(n) for n in names] if names and all(isinstance(n, str) for n in names) else None


def _with_example(hints: SampleHints, info: Any, path: Path, n_features: int) -> SampleHints:
    """Rows of the logged input example, when it has the model's width."""
    try:
        example = info.load_input_example(str(path))
    except Exception:  # no example, or one this MLflow cannot read: it is only a hint
        return hints
    if example is None:
        return hints
    rows = np.asarray(getattr(example, "values", example), dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        return hints
    mean = hints.mean if hints.mean is not None else rows.mean(axis=0)
    std = hints.std if hints.std is not None else rows.std(axis=0) + 1e-3
    return replace(hints, rows=rows, mean=mean, std=std)


def _without_credentials(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return uri
