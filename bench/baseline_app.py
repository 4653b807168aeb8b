"""The baseline: a plain in-process FastAPI + ONNX Runtime endpoint, no Kafka, no Redis.

Serves one registry model with one ORT session (one intra-op thread, like a
worker) behind uvicorn with uvloop and httptools, parsing and rendering with
orjson, and answers the gateway's request/response JSON shapes for
``/api/v1/predict`` and ``/api/v1/batch_predict``. Every rtml figure in the
bench is read as a ratio to this.

    python -m bench.baseline_app --model-dir models/iris_classifier/1 --port 8090
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from schemas.model_metadata import ModelMetadata


class Model:
    """One ONNX session and how to read its outputs (classifiers with probabilities)."""

    def __init__(self, model_dir: Path) -> None:
        self.meta = ModelMetadata.model_validate_json((model_dir / "metadata.json").read_bytes())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(model_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._outputs = [o for o in (self.meta.output_label, self.meta.output_probabilities) if o]

    def predict(self, rows: Any) -> tuple[list[Any], list[list[float]] | None]:
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.meta.n_features:
            raise ValueError(f"expected rows of {self.meta.n_features} features")
        results = self._session.run(self._outputs, {self.meta.input_name: matrix})
        labels: list[Any] = results[0].reshape(-1).tolist()
        probabilities = results[1].tolist() if len(results) > 1 else None
        return labels, probabilities


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _error(message: str) -> Response:
    return _json({"error": {"code": "invalid_input", "message": message}}, 422)


def create_app(model: Model) -> FastAPI:
    app = FastAPI(title="rtml bench baseline")
    name, version = model.meta.name, model.meta.version

    @app.post("/api/v1/predict")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            payload = orjson.loads(await request.body())
            labels, probabilities = model.predict([payload["features"]])
        except (ValueError, KeyError, TypeError) as exc:
            return _error(str(exc))
        row = probabilities[0] if probabilities else None
        return _json(
            {
                "prediction": labels[0],
                "probability": max(row) if row else None,
                "probabilities": row,
                "model_name": name,
                "model_version": version,
                "request_id": payload.get("request_id") or uuid.uuid4().hex,
                "timestamp": time.time(),
                "from_cache": False,
                "latency_ms": (time.perf_counter() - started) * 1000,
            }
        )

    @app.post("/api/v1/batch_predict")
    async def batch_predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            payload = orjson.loads(await request.body())
            labels, probabilities = model.predict(payload["features_batch"])
        except (ValueError, KeyError, TypeError) as exc:
            return _error(str(exc))
        return _json(
            {
                "predictions": labels,
                "probabilities": probabilities,
                "model_name": name,
                "model_version": version,
                "request_id": payload.get("request_id") or uuid.uuid4().hex,
                "count": len(labels),
                "from_cache": False,
                "total_latency_ms": (time.perf_counter() - started) * 1000,
            }
        )

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="registry dir <root>/<name>/<version>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(Model(args.model_dir))
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
