"""The schemas are the contract: the fast wire encoders must produce what they promise,
and the committed JSON Schema export must be current."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

from schemas.export import EXPORT_DIR, all_schemas, export_json_schemas
from schemas.messages import PredictionRecord, PredictRequest
from schemas.wire import encode_prediction_record, encode_request


def test_committed_json_schema_export_is_current(tmp_path: Path) -> None:
    assert export_json_schemas(check=True) == [], "run `rtml schemas export` and commit schemas/json"
    export_json_schemas(directory=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in EXPORT_DIR.iterdir())


def test_encode_request_validates_against_model_and_json_schema() -> None:
    raw = encode_request(
        request_id="r1",
        model="iris_classifier",
        version="1",
        features=[[5.1, 3.5, 1.4, 0.2]],
        reply_to="rtml.replies.gw",
        deadline_ms=1_700_000_000_000,
        use_cache=True,
        source="http",
        sent_at_ms=1_699_999_999_000,
    )
    request = PredictRequest.model_validate_json(raw)
    assert request.features == [[5.1, 3.5, 1.4, 0.2]]
    schema = orjson.loads((EXPORT_DIR / "predict_request.schema.json").read_bytes())
    jsonschema.validate(orjson.loads(raw), schema)


def test_encode_prediction_record_validates() -> None:
    raw = encode_prediction_record(
        request_id="r1",
        row=0,
        model="iris_classifier",
        version="1",
        features=[5.1, 3.5, 1.4, 0.2],
        prediction=0,
        probabilities=[0.9, 0.05, 0.05],
        from_cache=False,
        source="kafka",
        predicted_at_ms=1_700_000_000_500,
        sent_at_ms=1_700_000_000_000,
        served_by="worker",
    )
    record = PredictionRecord.model_validate_json(raw)
    assert record.probability == 0.9 and record.latency_ms == 500.0


@pytest.mark.parametrize(
    "bad",
    [
        {"request_id": "r", "model": "m", "features": [[float("nan")]]},
        {"request_id": "r", "model": "m", "features": []},
        {"request_id": "", "model": "m", "features": [[1.0]]},
        {"request_id": "r", "model": "m", "features": [[1.0]], "version": "v1"},
        {"request_id": "r", "model": "m", "features": [[1.0]], "surprise": 1},
    ],
)
def test_request_model_refuses_bad_messages(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PredictRequest.model_validate(bad)


def test_every_schema_is_exported() -> None:
    assert {f"{name}.schema.json" for name in all_schemas()} == {p.name for p in EXPORT_DIR.iterdir()}
