"""Errors of ``rtml models import``; all are :class:`runtime.errors.RtmlError` (HTTP 422)::

    ModelImportError             import_failed
    ├── SourceNotFound           no such file, directory or MLflow model version
    ├── UnreadableModel          corrupt or truncated file, wrong format for its name
    ├── NotAModel                the file loads, but holds no supported model
    ├── UnsupportedModel         a model, but its conversion to ONNX is not supported
    ├── MissingExtra             the framework needed for this source is not installed
    ├── BadSample                the --sample file does not fit the model
    └── ParityFailed             the ONNX graph does not reproduce the original (has .report)

None of them leaves anything in the registry: the version is written only after
every check passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.errors import RtmlError

if TYPE_CHECKING:
    from schemas.model_metadata import ParityReport


class ModelImportError(RtmlError):
    status = 422
    code = "import_failed"
    dead_letter_reason = "model_error"


class SourceNotFound(ModelImportError):
    status = 404


class UnreadableModel(ModelImportError):
    pass


class NotAModel(ModelImportError):
    pass


class UnsupportedModel(ModelImportError):
    pass


class BadSample(ModelImportError):
    pass


class MissingExtra(ModelImportError):
    """A heavy framework is optional; the message names the extra that brings it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'rtml[{extra}]'"
        )
        self.module = module
        self.extra = extra


class ParityFailed(ModelImportError):
    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report
