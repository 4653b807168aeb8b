"""Which converter handles a source: a path (by suffix or directory contents), a
``models:/`` URI (MLflow), or a model object already in memory."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from importers.model import Converted
from runtime.errors import SourceNotFound, UnsupportedModel
from schemas.model_metadata import SourceDetails

if TYPE_CHECKING:
    from importers.api import ImportOptions

SUFFIXES = {
    ".pkl": "sklearn-pickle",
    ".pickle": "sklearn-pickle",
    ".joblib": "sklearn-joblib",
    ".onnx": "onnx",
    ".keras": "keras",
    ".h5": "keras",
    ".pt": "torch",
    ".pth": "torch",
}


@dataclass(frozen=True)
class Loaded:
    converted: Converted
    details: SourceDetails


def load(source: str | Path | Any, name: str, options: ImportOptions) -> Loaded:
    if isinstance(source, str) and source.startswith("models:/"):
        from importers import mlflow_source

        return mlflow_source.load(source, name, options)
    if isinstance(source, str | Path):
        path = Path(source)
        fmt = detect(path)
        details = SourceDetails(format=fmt, uri=str(path), sha256=file_sha256(path))
        converted = convert_path(path, fmt, name, options)
        return Loaded(converted, details.model_copy(update={"format": converted.source_format}))
    return _load_object(source, name, options)


def detect(path: Path) -> str:
    """Source format of a file or directory; raises SourceNotFound / UnsupportedModel."""
    if not path.exists():
        raise SourceNotFound(f"{path} does not exist")
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return "mlflow-local"
        if (path / "saved_model.pb").is_file():
            return "tf-savedmodel"
        raise UnsupportedModel(f"{path} is a directory but neither a SavedModel nor an MLflow model")
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUFFIXES))
        raise UnsupportedModel(
            f"{path}: unknown model file type {path.suffix!r}; supported: {known}, directories"
        )
    if fmt == "torch":
        return "torchscript" if _is_torchscript(path) else "torch-module"
    return fmt


def convert_path(path: Path, fmt: str, name: str, options: ImportOptions) -> Converted:
    return _CONVERTERS[fmt](path, name, options)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _sklearn(path: Path, name: str, options: ImportOptions) -> Converted:
    from importers import sklearn_source

    fmt = "sklearn-joblib" if path.suffix == ".joblib" else "sklearn-pickle"
    return sklearn_source.convert(sklearn_source.load_file(path), name, fmt)


def _onnx(path: Path, name: str, options: ImportOptions) -> Converted:
    from importers import onnx_source

    return onnx_source.convert(path.read_bytes(), options.task, options.classes, options.n_features)


def _keras(path: Path, name: str, options: ImportOptions) -> Converted:
    from importers import keras_source

    return keras_source.convert_path(path, name, options)


def _torch(path: Path, name: str, options: ImportOptions) -> Converted:
    from importers import torch_source

    return torch_source.convert_path(path, name, options)


def _mlflow_local(path: Path, name: str, options: ImportOptions) -> Converted:
    from importers import mlflow_source

    return mlflow_source.convert_local(path, name, options)[0]


_CONVERTERS: dict[str, Callable[[Path, str, ImportOptions], Converted]] = {
    "sklearn-pickle": _sklearn,
    "sklearn-joblib": _sklearn,
    "onnx": _onnx,
    "keras": _keras,
    "tf-savedmodel": _keras,
    "torchscript": _torch,
    "torch-module": _torch,
    "mlflow-local": _mlflow_local,
}


def _load_object(model: Any, name: str, options: ImportOptions) -> Loaded:
    modules = {cls.__module__.split(".")[0] for cls in type(model).__mro__}
    if "sklearn" in modules:
        from importers import sklearn_source

        converted = sklearn_source.convert(model, name, "sklearn")
    elif "torch" in modules:
        from importers import torch_source

        converted = torch_source.convert_module(model, name, options)
    elif modules & {"keras", "tf_keras", "tensorflow"}:
        from importers import keras_source

        converted = keras_source.convert_model(model, name, options)
    else:
        raise UnsupportedModel(f"cannot import a {type(model).__module__}.{type(model).__name__} object")
    return Loaded(
        converted, SourceDetails(format=converted.source_format, uri=f"<{type(model).__name__} object>")
    )


def file_sha256(path: Path) -> str:
    """Checksum of a file, or of every file of a directory in path order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
