"""Optional heavy frameworks: import them only when a source needs them."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from runtime.errors import MissingExtra

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


def missing_extra(purpose: str, *modules: str) -> MissingExtra | None:
    """The MissingExtra of the first top-level ``modules`` not installed (None: all are), found
    without importing them."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return MissingExtra(module, EXTRAS.get(module, module), purpose)
    return None


def require(module: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or MissingExtra naming the extra to install."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == top:
            raise MissingExtra(top, EXTRAS.get(top, top), purpose) from exc
        raise
