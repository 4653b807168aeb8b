"""The schemas are the contract: the committed JSON Schema export must be current, and the
request model refuses what it must. (Each fast encoder is checked against both in test_encoders.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.export import EXPORT_DIR, all_schemas, export_json_schemas
from schemas.messages import PredictRequest


def test_committed_json_schema_export_is_current(tmp_path: Path) -> None:
    assert export_json_schemas(check=True) == [], "run `rtml schemas export` and commit schemas/json"
    export_json_schemas(directory=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in EXPORT_DIR.iterdir())


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
