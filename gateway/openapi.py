"""The OpenAPI description of every request and response body (``/openapi.json``, ``/docs``).

The prediction endpoints are answered by :mod:`gateway.fast_path` before FastAPI sees them, and
the other handlers read raw bodies (orjson, one error shape), so FastAPI cannot infer their
schemas: these models describe them, and :func:`document` attaches them. They document; the
handlers validate (tests check that real answers conform to these schemas).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from runtime.errors import (
    BadRequest,
    DeadlineExceeded,
    Forbidden,
    InvalidInput,
    ModelNotFound,
    PayloadTooLarge,
    PolicyConflict,
    RateLimited,
    RequestIdInUse,
    RtmlError,
    Unauthorized,
    Unavailable,
)

Label = int | str | float


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class PredictBody(_Body):
    model_name: str = Field(description="A model the gateway serves")
    features: list[float] = Field(description="One row, in the model's feature order")
    model_version: str | int | None = Field(
        default=None, description="Pin a version; default: the policy routes"
    )
    request_id: str | None = Field(default=None, min_length=1, max_length=128)
    timeout_ms: int | None = Field(default=None, ge=1, description="Deadline; at most gateway.max_timeout_ms")
    use_cache: bool = True
    routing_key: str | int | None = Field(default=None, description="Sticky A/B routing key (1-256 chars)")


class BatchBody(_Body):
    model_name: str
    features_batch: list[list[float]] = Field(min_length=1, description="Up to gateway.max_batch_rows rows")
    model_version: str | int | None = None
    request_id: str | None = Field(default=None, min_length=1, max_length=128)
    timeout_ms: int | None = Field(default=None, ge=1)
    use_cache: bool = True
    routing_key: str | int | None = None


class PredictAnswer(_Body):
    prediction: Label
    probability: float | None
    probabilities: list[float] | None
    distances: list[float] | None = Field(
        default=None, description="Clustering models: distance to each centre"
    )
    model_name: str
    model_version: str
    route: str = Field(description="default, split, pinned or canary")
    request_id: str
    timestamp: float
    from_cache: bool
    latency_ms: float


class BatchAnswer(_Body):
    predictions: list[Label]
    probabilities: list[list[float]] | None
    distances: list[list[float]] | None = None
    model_name: str
    model_version: str
    route: str
    request_id: str
    count: int
    from_cache: bool
    total_latency_ms: float


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_input")
    message: str = Field(description="Names the offending field or value and what was expected")


class ErrorAnswer(BaseModel):
    error: ErrorDetail


class VersionBody(BaseModel):
    version: str | int = Field(description='A registered version, e.g. "2"')


class TrafficBody(BaseModel):
    split: dict[str, int] | None = Field(default=None, description="version -> percent, summing to 100")
    shadow: dict[str, int] | None = Field(default=None, description="version -> percent mirrored")


class CanaryBody(BaseModel):
    version: str | int
    steps: list[int] = Field(default=[5, 25, 50, 100], description="Percent of the traffic per step")
    step_s: float = 60
    limits: dict[str, float] | None = Field(default=None, description="max_error_rate, max_p99_ratio, ...")


class V2ErrorAnswer(BaseModel):
    """The Open Inference Protocol's error shape: one message string."""

    error: str = Field(description="Names the offending field or value and what was expected")


def error_responses(
    *errors: type[RtmlError], model: type[BaseModel] = ErrorAnswer
) -> dict[int | str, dict[str, Any]]:
    """The JSON error answers an endpoint can give (every one also may give 500)."""
    classes: list[type[RtmlError]] = [*errors, RtmlError]
    return {
        cls.status: {"model": model, "description": (cls.__doc__ or cls.code).strip().splitlines()[0]}
        for cls in classes
    }


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a handler that reads its body itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")
                }
            },
        }
    }


PREDICT_ERRORS = error_responses(
    BadRequest,
    Unauthorized,
    Forbidden,
    ModelNotFound,
    RequestIdInUse,
    PayloadTooLarge,
    InvalidInput,
    RateLimited,
    Unavailable,
    DeadlineExceeded,
)
ADMIN_ERRORS = error_responses(
    BadRequest,
    Unauthorized,
    Forbidden,
    ModelNotFound,
    PolicyConflict,
    PayloadTooLarge,
    InvalidInput,
    Unavailable,
)
READ_ERRORS = error_responses(Unauthorized, Forbidden, ModelNotFound)
LIST_ERRORS = error_responses(Unauthorized, Forbidden)
DRIFT_ERRORS = error_responses(Unauthorized, Forbidden, ModelNotFound, Unavailable)
CACHE_ERRORS = error_responses(Unauthorized, Forbidden, ModelNotFound, Unavailable)
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    Unavailable.status: {
        "description": "Not ready: the body's reasons say why (Kafka, reply consumer, draining)"
    }
}
V2_READY: dict[int | str, dict[str, Any]] = {
    Unavailable.status: {
        "description": "Not ready: Kafka unreachable or no reply consumer yet ({ready: false})"
    }
}
V2_READ_ERRORS = error_responses(Unauthorized, Forbidden, ModelNotFound, InvalidInput, model=V2ErrorAnswer)
V2_INFER_ERRORS = error_responses(
    BadRequest,
    Unauthorized,
    Forbidden,
    ModelNotFound,
    RequestIdInUse,
    PayloadTooLarge,
    InvalidInput,
    RateLimited,
    Unavailable,
    DeadlineExceeded,
    model=V2ErrorAnswer,
)


def document(app: FastAPI) -> None:
    """Routes that exist only to describe the fast-path endpoints (FastPath answers them first)."""

    @app.post("/api/v1/predict", response_model=PredictAnswer, responses=PREDICT_ERRORS, tags=["predict"])
    async def predict(body: PredictBody) -> PredictAnswer:  # pragma: no cover - never reached
        raise RtmlError("answered by the fast path")

    @app.post("/api/v1/batch_predict", response_model=BatchAnswer, responses=PREDICT_ERRORS, tags=["predict"])
    async def batch_predict(body: BatchBody) -> BatchAnswer:  # pragma: no cover - never reached
        raise RtmlError("answered by the fast path")
