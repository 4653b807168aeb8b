"""Open Inference Protocol (V2) REST endpoints, as Triton, KServe, MLServer and Seldon clients expect.

Inference requests go through the same :class:`~gateway.service.PredictionService` as
``/api/v1/predict`` (one Kafka message per request). Errors raised here are rendered
by the gateway's one handler in the protocol's ``{"error": "<message>"}`` body
(:func:`error_body`), with the status of their class in :mod:`runtime.errors`.
Request tensors may be JSON ``data`` (flat or nested, row-major) or the binary tensor
extension (``Inference-Header-Content-Length``); responses are JSON.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.lifecycle import GatewayRuntime
from gateway.openapi import V2_INFER_ERRORS, V2_READ_ERRORS, V2_READY
from gateway.service import Prediction
from runtime import __version__
from runtime.errors import BadRequest, InvalidInput, PayloadTooLarge, RtmlError, Unavailable
from schemas.model_metadata import ModelMetadata

PREFIX = "/v2"
NUMERIC_TYPES = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4", "FP16": "<f2"}
BINARY_HEADER = "inference-header-content-length"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def error_body(error: RtmlError) -> dict[str, str]:
    """The protocol's error body; the status is the error's."""
    return {"error": error.message}


def is_v2_route(path: str) -> bool:
    """Whether ``path`` (a route's path template) belongs to this protocol."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def _tensor_metadata(metadata: ModelMetadata) -> dict[str, list[dict[str, Any]]]:
    inputs = [{"name": metadata.input_name, "datatype": "FP32", "shape": [-1, metadata.n_features]}]
    outputs: list[dict[str, Any]] = []
    if metadata.output_label:
        label_type = "BYTES" if metadata.classes and isinstance(metadata.classes[0], str) else "INT64"
        outputs.append({"name": metadata.output_label, "datatype": label_type, "shape": [-1]})
    if metadata.output_probabilities:
        outputs.append(
            {
                "name": metadata.output_probabilities,
                "datatype": "FP32",
                "shape": [-1, len(metadata.classes or [])],
            }
        )
    if metadata.output_distances:
        outputs.append(
            {
                "name": metadata.output_distances,
                "datatype": "FP32",
                "shape": [-1, len(metadata.classes or [])],
            }
        )
    if metadata.output_value:
        outputs.append({"name": metadata.output_value, "datatype": "FP32", "shape": [-1]})
    return {"inputs": inputs, "outputs": outputs}


def _split_binary(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        return _loads(body), b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise BadRequest(f"Inference-Header-Content-Length {header_length[:20]!r} does not fit the body")
    split = int(header_length)
    return _loads(body[:split]), body[split:]


def _loads(raw: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest("inference request must be a JSON object")
    return payload


def _rows_from_input(tensor: Any, blob: bytes, metadata: ModelMetadata) -> tuple[list[list[float]], int]:
    """Turn one input tensor into rows of features; returns the rows and the binary bytes used."""
    if not isinstance(tensor, dict):
        raise BadRequest("each input must be an object with name, shape, datatype and data")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if datatype not in NUMERIC_TYPES:
        raise BadRequest(f"input '{name}' has datatype {datatype!r}; expected FP32, FP64 or INT64")
    if not (
        isinstance(shape, list) and 1 <= len(shape) <= 2 and all(isinstance(d, int) and d >= 0 for d in shape)
    ):
        raise BadRequest(f"input '{name}' shape {shape!r} must be [N, {metadata.n_features}]")
    rows, columns = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])
    if columns != metadata.n_features:
        raise InvalidInput(
            f"input '{name}' has {columns} features per row; model '{metadata.name}' "
            f"v{metadata.version} expects {metadata.n_features}"
        )
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        values = _binary_values(blob, size, datatype, name)
    else:
        values = _json_values(tensor.get("data"), name)
    if len(values) != rows * columns:
        raise BadRequest(f"input '{name}' has {len(values)} values; shape {shape} needs {rows * columns}")
    return [values[i * columns : (i + 1) * columns] for i in range(rows)], size or 0


def _binary_values(blob: bytes, size: Any, datatype: str, name: Any) -> list[float]:
    if not isinstance(size, int) or size > len(blob):
        raise BadRequest(f"input '{name}' binary_data_size {size!r} exceeds the binary payload")
    import numpy as np  # only for the binary extension: keeps numpy out of the gateway otherwise

    values: list[float] = (
        np.frombuffer(blob[:size], dtype=NUMERIC_TYPES[datatype]).astype(np.float64).tolist()
    )
    return values


def _json_values(data: Any, name: Any) -> list[float]:
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}' needs a 'data' array")
    flat: list[Any] = []
    stack = [data]
    while stack:  # row-major flatten of arbitrarily nested lists, without recursion
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    for index, value in enumerate(flat):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInput(f"input '{name}' data[{index}] is {str(value)[:30]}; expected a finite number")
    return flat


def _outputs(result: Prediction, metadata: ModelMetadata, wanted: list[str] | None) -> list[dict[str, Any]]:
    n = len(result.predictions)
    outputs = []
    for spec in _tensor_metadata(metadata)["outputs"]:
        if wanted is not None and spec["name"] not in wanted:
            continue
        if spec["name"] in (metadata.output_probabilities, metadata.output_distances):
            probabilities = result.probabilities or []
            width = len(probabilities[0]) if probabilities else 0
            data: list[Any] = [p for row in probabilities for p in row]
            shape = [n, width]
        else:
            data, shape = list(result.predictions), [n]
        outputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": shape, "data": data})
    return outputs


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``limit``, never read whole first."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


def v2_router(runtime: GatewayRuntime, body_limit: int) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    def model_metadata(name: str, version: str | None) -> ModelMetadata:
        return runtime.models.resolve(name, version)

    @router.get("")
    async def server_metadata() -> Response:
        return _json({"name": "rtml", "version": __version__, "extensions": ["binary_tensor_data"]})

    @router.get("/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @router.get("/health/ready", responses=V2_READY)
    async def ready() -> Response:
        ok = not runtime.not_ready_reasons()
        return _json({"ready": ok}, 200 if ok else Unavailable.status)

    async def describe(name: str, version: str | None) -> Response:
        metadata = model_metadata(name, version)
        entry = runtime.models.entry(name)
        return _json(
            {
                "name": name,
                "versions": sorted(entry.versions, key=int),
                "platform": "onnxruntime_onnx",
                **_tensor_metadata(metadata),
            }
        )

    @router.get("/models/{name}", responses=V2_READ_ERRORS)
    async def model(name: str) -> Response:
        return await describe(name, None)

    @router.get("/models/{name}/versions/{version}", responses=V2_READ_ERRORS)
    async def model_version(name: str, version: str) -> Response:
        return await describe(name, version)

    async def model_ready(name: str, version: str | None) -> Response:
        model_metadata(name, version)
        ok = not runtime.not_ready_reasons()
        return _json({"name": name, "ready": ok}, 200 if ok else Unavailable.status)

    @router.get("/models/{name}/ready", responses=V2_READ_ERRORS | V2_READY)
    async def ready_latest(name: str) -> Response:
        return await model_ready(name, None)

    @router.get("/models/{name}/versions/{version}/ready", responses=V2_READ_ERRORS | V2_READY)
    async def ready_version(name: str, version: str) -> Response:
        return await model_ready(name, version)

    async def infer(request: Request, name: str, version: str | None) -> Response:
        body = await _read_limited(request, body_limit)
        payload, blob = _split_binary(body, request.headers.get(BINARY_HEADER))
        metadata = model_metadata(name, version)
        inputs = payload.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1:
            raise BadRequest(f"model '{name}' takes exactly one input tensor '{metadata.input_name}'")
        rows, _used = _rows_from_input(inputs[0], blob, metadata)
        max_rows = runtime.settings.gateway.max_batch_rows
        if not 1 <= len(rows) <= max_rows:
            raise InvalidInput(f"input '{metadata.input_name}' has {len(rows)} rows; expected 1..{max_rows}")
        request_id = payload.get("id")
        if request_id is not None and not (isinstance(request_id, str) and 1 <= len(request_id) <= 128):
            raise InvalidInput("field 'id' must be a string of 1 to 128 characters")
        wanted = _requested_outputs(payload, metadata)
        with runtime.observe("v2_infer", name) as observation:
            result = await runtime.service.predict(
                name,
                version,  # None: the model's traffic policy routes it (default, split, canary)
                rows,
                request_id=str(request_id) if request_id not in (None, "") else None,
                field=str(inputs[0].get("name")),
            )
            observation.version = result.version
        answer: dict[str, Any] = {
            "model_name": name,
            "model_version": result.version,
            "outputs": _outputs(result, metadata, wanted),
        }
        if request_id is not None:
            answer["id"] = request_id
        return _json(answer)

    @router.post("/models/{name}/infer", responses=V2_INFER_ERRORS)
    async def infer_latest(name: str, request: Request) -> Response:
        return await infer(request, name, None)

    @router.post("/models/{name}/versions/{version}/infer", responses=V2_INFER_ERRORS)
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return await infer(request, name, version)

    return router


def _requested_outputs(payload: dict[str, Any], metadata: ModelMetadata) -> list[str] | None:
    requested = payload.get("outputs")
    if requested is None:
        return None
    if not isinstance(requested, list):
        raise BadRequest("'outputs' must be a list of {name}")
    known = {spec["name"] for spec in _tensor_metadata(metadata)["outputs"]}
    names = [str(o.get("name")) for o in requested if isinstance(o, dict)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; model '{metadata.name}' has {sorted(known)}")
    return names
