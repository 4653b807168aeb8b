"""Python client SDK for rtml: typed sync/async clients, batch and CSV prediction, model evaluation.

Depends on httpx and numpy only; evaluating a local model file needs the ``evaluate`` extra.

>>> from rtml_client import MLClient  # doctest: +SKIP
>>> with MLClient("http://localhost:8080") as client:  # doctest: +SKIP
...     client.predict("iris_classifier", [5.1, 3.5, 1.4, 0.2]).prediction
0
"""

from rtml_client._version import __version__
from rtml_client.async_client import AsyncMLClient
from rtml_client.batch import BatchPredictor
from rtml_client.client import MLClient
from rtml_client.errors import (
    AuthenticationError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    InvalidInput,
    ModelNotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RtmlClientError,
    ServerError,
    Timeout,
    Unavailable,
)
from rtml_client.evaluate import ModelEvaluator
from rtml_client.results import (
    BatchResult,
    BenchmarkResult,
    CsvReport,
    DriftReport,
    EvaluationReport,
    Health,
    ModelInfo,
    PredictionResult,
    Readiness,
)
from rtml_client.retry import RetryPolicy

__all__ = [
    "AsyncMLClient",
    "AuthenticationError",
    "BadRequest",
    "BatchPredictor",
    "BatchResult",
    "BenchmarkResult",
    "Conflict",
    "ConnectionFailed",
    "CsvReport",
    "DriftReport",
    "EvaluationReport",
    "Health",
    "InvalidInput",
    "MLClient",
    "ModelEvaluator",
    "ModelInfo",
    "ModelNotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PredictionResult",
    "RateLimited",
    "Readiness",
    "RetryPolicy",
    "RtmlClientError",
    "ServerError",
    "Timeout",
    "Unavailable",
    "__version__",
]
