"""The gateway's model table resolves versions and explains what exists when asked for what does not."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest

from gateway.model_table import ModelTable
from runtime.errors import ModelNotFound


def table() -> ModelTable:
    versions = {v: MagicMock(version=v) for v in ("1", "2", "10")}
    return ModelTable({"iris": versions, "empty": {}})


def test_latest_is_numeric_not_lexical() -> None:
    assert table().resolve("iris", None).version == "10"
    assert table().resolve("iris", "2").version == "2"


def test_unknown_model_and_version_list_what_exists() -> None:
    with pytest.raises(ModelNotFound, match="available models: iris"):
        table().resolve("nope", None)
    with pytest.raises(ModelNotFound, match="available versions: 1, 2, 10"):
        table().resolve("iris", "3")
    assert table().names() == ["iris"]
