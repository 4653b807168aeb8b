"""Optional heavy frameworks: import them only when a source needs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from importers.errors import MissingExtra

EXTRAS = {
    "skl2onnx": "train",
    "sklearn": "train",
    "joblib": "train",
    "tensorflow": "tensorflow",
    "tf2onnx": "tensorflow",
    "keras": "tensorflow",
    "torch": "torch",
    "mlflow": "mlflow",
}
"""Top-level module -> the rtml extra that installs it (see pyproject.toml)."""


def require(module: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or MissingExtra naming the extra to install."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == top:
            raise MissingExtra(top, EXTRAS.get(top, top), purpose) from exc
        raise
