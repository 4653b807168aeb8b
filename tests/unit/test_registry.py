"""Filesystem model registry and model metadata schema (no Kafka, no Redis, no scikit-learn)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from runtime import errors, registry
from runtime.errors import (
    ChecksumMismatch,
    InvalidModel,
    ModelNotFound,
    RegistryError,
    VersionExists,
    VersionNotFound,
)
from runtime.registry import ModelRegistry
from schemas.model_metadata import FeatureBaseline, ModelMetadata


def tiny_classifier(n_features: int = 4, n_classes: int = 3, seed: int = 0) -> bytes:
    """softmax(x @ W) with skl2onnx's output names, built by hand."""
    weights = np.random.default_rng(seed).normal(size=(n_features, n_classes)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["float_input", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("float_input", TensorProto.FLOAT, [None, n_features])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes]),
        ],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())


def make_metadata(name: str = "toy", version: str = "auto", **changes: Any) -> ModelMetadata:
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "task": "classification",
        "framework": "onnx",
        "source_format": "onnx",
        "feature_names": ["a", "b", "c", "d"],
        "n_features": 4,
        "feature_dtypes": ["float32"] * 4,
        "classes": [0, 1, 2],
        "output_label": "label",
        "output_probabilities": "probabilities",
        "metrics": {"accuracy": 0.9},
        "params": {"kind": "tiny"},
    }
    return ModelMetadata(**{**fields, **changes})


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


# -- registering and reading ----------------------------------------------------


def test_register_assigns_versions_and_reads_back(reg: ModelRegistry) -> None:
    first = reg.register(tiny_classifier(), make_metadata())
    second = reg.register(tiny_classifier(seed=1), make_metadata(version=""))

    assert (first.version, second.version) == ("1", "2")
    assert first.is_registered and len(first.onnx_sha256) == 64
    assert reg.list_models() == ["toy"]
    assert reg.versions("toy") == ["1", "2"]
    assert reg.latest("toy") == "2"
    assert reg.resolve("toy") == "2" and reg.resolve("toy", "1") == "1"
    assert reg.metadata("toy", "1") == first
    assert reg.model_path("toy", "2").read_bytes() == tiny_classifier(seed=1)
    assert reg.verify("toy", "2") == second
    assert reg.snapshot() == {"toy": {"1": first, "2": second}}
    assert sorted(p.name for p in (reg.root / "toy" / "1").iterdir()) == ["metadata.json", "model.onnx"]
    assert leftovers(reg.root) == []


def test_versions_sort_numerically(reg: ModelRegistry) -> None:
    for version in ["2", "10", "9"]:
        reg.register(tiny_classifier(), make_metadata(version=version))
    assert reg.versions("toy") == ["2", "9", "10"]
    assert reg.latest("toy") == "10"
    assert reg.register(tiny_classifier(), make_metadata()).version == "11"


def test_duplicate_version_is_refused(reg: ModelRegistry) -> None:
    reg.register(tiny_classifier(), make_metadata(version="1"))
    with pytest.raises(VersionExists, match=r"'toy' v1 already exists.*versions: 1"):
        reg.register(tiny_classifier(seed=1), make_metadata(version="1"))
    assert reg.model_path("toy", "1").read_bytes() == tiny_classifier()


def test_replace_swaps_a_version(reg: ModelRegistry) -> None:
    reg.register(tiny_classifier(), make_metadata(version="1"))
    replaced = reg.register(tiny_classifier(seed=1), make_metadata(version="1"), replace=True)
    assert reg.versions("toy") == ["1"]
    assert reg.verify("toy", "1") == replaced
    assert reg.model_path("toy", "1").read_bytes() == tiny_classifier(seed=1)
    assert leftovers(reg.root) == [] and leftovers(reg.root / "toy") == []


def test_stored_model_runs_and_metadata_is_json(reg: ModelRegistry) -> None:
    meta = reg.register(tiny_classifier(), make_metadata())
    stored = json.loads((reg.root / "toy" / "1" / "metadata.json").read_text())
    assert stored["onnx_sha256"] == meta.onnx_sha256 and stored["version"] == "1"
    session = ort.InferenceSession(str(reg.model_path("toy", "1")), providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "probabilities"], {"float_input": np.ones((2, 4), np.float32)})
    assert label.shape == (2,) and proba.shape == (2, 3)


# -- atomicity ----------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["write_metadata", "rename"])
def test_failed_register_leaves_nothing_behind(
    reg: ModelRegistry, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    real_write, real_rename = registry._write_file, os.rename

    def write(path: Path, data: bytes) -> None:
        if failing == "write_metadata" and path.name == "metadata.json":
            path.write_bytes(data[: len(data) // 2])  # half-written, then the disk fills up
            raise OSError(28, "No space left on device")
        real_write(path, data)

    def rename(src: Any, dst: Any) -> None:
        if failing == "rename":
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(registry, "_write_file", write)
    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        reg.register(tiny_classifier(), make_metadata())

    assert not (reg.root / "toy" / "1").exists()
    assert leftovers(reg.root) == []
    assert reg.list_models() == []
    monkeypatch.undo()
    assert reg.register(tiny_classifier(), make_metadata()).version == "1"


def test_stale_numbered_dir_is_ignored_but_not_reused(reg: ModelRegistry) -> None:
    (reg.root / "toy" / "1").mkdir(parents=True)
    (reg.root / "toy" / "1" / "model.onnx").write_bytes(b"partial")  # no metadata.json
    assert reg.list_models() == []
    assert reg.register(tiny_classifier(), make_metadata()).version == "2"
    assert reg.versions("toy") == ["2"]


# -- validation ---------------------------------------------------------------------


def test_invalid_onnx_bytes_are_refused(reg: ModelRegistry) -> None:
    with pytest.raises(InvalidModel, match="model 'toy': not a valid ONNX model"):
        reg.register(b"definitely not onnx", make_metadata())
    assert not (reg.root / "toy").exists()  # validated before anything is written


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output_probabilities": "proba"}, r"declared outputs \['proba'\] not in the ONNX outputs"),
        ({"input_name": "X"}, r"ONNX inputs are \['float_input'\]"),
        (
            {"feature_names": list("abcde"), "n_features": 5, "feature_dtypes": ["float32"] * 5},
            r"trial run on zeros \[1, 5\] failed",
        ),
        ({"classes": [0, 1]}, r"expected \(1, 2\) for classes \[0, 1\]"),
    ],
)
def test_metadata_must_match_the_onnx_model(
    reg: ModelRegistry, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidModel, match=message):
        reg.register(tiny_classifier(), make_metadata(**changes))
    assert reg.list_models() == []


def test_checksum_mismatch_is_detected(reg: ModelRegistry) -> None:
    reg.register(tiny_classifier(), make_metadata())
    reg.verify("toy", "1")
    reg.model_path("toy", "1").write_bytes(tiny_classifier(seed=7))
    with pytest.raises(ChecksumMismatch, match=r"model 'toy' v1: .*model.onnx has sha256"):
        reg.verify("toy", "1")


def test_corrupt_metadata_is_reported_and_skipped_by_snapshot(reg: ModelRegistry) -> None:
    good = reg.register(tiny_classifier(), make_metadata())
    reg.register(tiny_classifier(), make_metadata())
    (reg.root / "toy" / "2" / "metadata.json").write_text("{not json")
    with pytest.raises(InvalidModel, match=r"model 'toy' v2: unreadable"):
        reg.metadata("toy", "2")
    assert reg.snapshot() == {"toy": {"1": good}}


# -- lookups that fail -----------------------------------------------------------


def test_unknown_model_names_what_exists(reg: ModelRegistry) -> None:
    for name in ["iris_classifier", "fraud_detector", "binary_classifier"]:
        reg.register(tiny_classifier(), make_metadata(name=name))
    expected = "model 'foo' not found; registered: binary_classifier, fraud_detector, iris_classifier"
    with pytest.raises(ModelNotFound) as info:
        reg.latest("foo")
    assert str(info.value) == expected
    assert isinstance(info.value, errors.ModelNotFound) and info.value.status == 404
    with pytest.raises(VersionNotFound, match=r"'iris_classifier' has no version '7'; versions: 1$"):
        reg.metadata("iris_classifier", "7")


def test_empty_registry(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "missing")
    assert reg.list_models() == [] and reg.snapshot() == {}
    with pytest.raises(ModelNotFound, match="registered: none"):
        reg.versions("iris_classifier")


@pytest.mark.parametrize("name", ["../etc", "/abs", "Upper", "", "a/b", ".hidden"])
def test_names_that_are_not_model_names_never_reach_the_filesystem(reg: ModelRegistry, name: str) -> None:
    with pytest.raises(ModelNotFound, match="not a valid model name"):
        reg.versions(name)


def test_hidden_and_incomplete_directories_are_ignored(reg: ModelRegistry) -> None:
    reg.register(tiny_classifier(), make_metadata())
    (reg.root / ".trash" / "1").mkdir(parents=True)
    (reg.root / ".trash" / "1" / "metadata.json").write_text("{}")
    (reg.root / "empty_model").mkdir()
    (reg.root / "toy" / ".tmp-9").mkdir()
    (reg.root / "toy" / "notes").mkdir()
    (reg.root / "README.md").write_text("hi")
    assert reg.list_models() == ["toy"]
    assert reg.versions("toy") == ["1"]


def test_errors_share_one_tree() -> None:
    for cls in (ModelNotFound, VersionNotFound, VersionExists, InvalidModel, ChecksumMismatch):
        assert issubclass(cls, RegistryError) and issubclass(cls, errors.RtmlError)


# -- the metadata schema ----------------------------------------------------------


def test_metadata_is_frozen_and_strict() -> None:
    meta = make_metadata()
    with pytest.raises(ValidationError):
        meta.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make_metadata(surprise=1)
    with pytest.raises(ValidationError, match="n_features=3 but 4 feature_names"):
        make_metadata(n_features=3)
    with pytest.raises(ValidationError, match="String should match pattern"):
        make_metadata(name="Bad Name")
    with pytest.raises(ValidationError, match="String should match pattern"):
        make_metadata(version="01")
    with pytest.raises(ValidationError, match="need classes and output_label"):
        make_metadata(classes=None)
    with pytest.raises(ValidationError, match="JSON-safe"):
        make_metadata(params={"f": float("nan")})


def test_metadata_json_round_trip_with_baseline() -> None:
    column = FeatureBaseline(
        count=3,
        mean=1.0,
        std=0.8,
        min=0.0,
        max=2.0,
        bin_edges=[0.0, 0.5, 1.5, 2.0],
        bin_proportions=[1 / 3, 1 / 3, 1 / 3],
    )
    baseline = {"features": {name: column.model_dump() for name in "abcd"}}
    meta = make_metadata(baseline=baseline, classes=["cat", "dog", "eel"])
    assert ModelMetadata.from_json(meta.to_json()) == meta
    assert meta.classes == ["cat", "dog", "eel"]
    assert [column.bin_index(x) for x in (-5.0, 0.0, 0.5, 1.0, 1.5, 2.0, 9.0)] == [0, 0, 1, 1, 2, 2, 2]


def test_onnx_checker_accepts_the_test_model() -> None:
    onnx.checker.check_model(onnx.load_model_from_string(tiny_classifier()), full_check=True)
