"""``rtml-client`` / ``rtml predict|bench|models list``: output, --json and exit codes.
In-process through ``main(argv)``; the console scripts themselves run in test_client_docs.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtml import cli as rtml_cli
from rtml_client.cli import main, parse_features
from tests.stack_fixtures import UNSERVED_MODEL, RunningStack, free_port

IRIS_ROW = ["5.1", "3.5", "1.4", "0.2"]


@pytest.mark.parametrize(
    "tokens",
    [["5.1", "3.5", "1.4", "0.2"], ["5.1,3.5,1.4,0.2"], ["[5.1, 3.5, 1.4, 0.2]"], ["5.1,", "3.5 1.4", "0.2"]],
)
def test_features_parse_in_every_documented_spelling(tokens: list[str]) -> None:
    assert parse_features(tokens) == [5.1, 3.5, 1.4, 0.2]


def test_non_numeric_features_are_a_usage_error() -> None:
    with pytest.raises(SystemExit, match="could not convert"):
        parse_features(["5.1", "abc"])


def test_unreachable_gateway_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["predict", "iris_classifier", "--features", *IRIS_ROW, "--url", url, "--retries", "0"]) == 4
    assert "cannot reach" in capsys.readouterr().err


def test_csv_needs_out() -> None:
    with pytest.raises(SystemExit, match="--out"):
        main(["predict", "iris_classifier", "--csv", "in.csv"])


def test_rtml_models_list_json_reads_the_local_registry(
    registry_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTML_REGISTRY__ROOT", str(registry_root))
    assert rtml_cli.main(["models", "list", "--json"]) == 0
    models = {model["name"]: model for model in json.loads(capsys.readouterr().out)}
    assert (
        models["iris_classifier"]["versions"] == ["1", "2"] and models["iris_classifier"]["n_features"] == 4
    )


class TestAgainstTheStack:
    def test_predict_human_and_json(self, stack: RunningStack, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["predict", "iris_classifier", "--features", *IRIS_ROW, "--url", stack.base_url]) == 0
        assert "prediction 0" in capsys.readouterr().out
        argv = ["predict", "iris_classifier", "--features", *IRIS_ROW, "--json", "--model-version", "1"]
        assert main([*argv, "--url", stack.base_url, "--no-cache"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["prediction"] == 0 and answer["model_version"] == "1" and answer["from_cache"] is False

    @pytest.mark.parametrize(
        ("argv", "code", "message"),
        [
            (["predict", "nope", "--features", "1"], 3, "not found"),
            (["predict", "iris_classifier", "--features", "1", "2"], 2, "expects 4"),
            (
                ["predict", UNSERVED_MODEL, "--features", *["0"] * 12, "--no-cache", "--timeout", "0.3"],
                4,
                "no answer",
            ),
            (["bench", "nope", "-n", "3"], 3, "not found"),
        ],
    )
    def test_failures_exit_non_zero_with_the_server_message(
        self,
        stack: RunningStack,
        capsys: pytest.CaptureFixture[str],
        argv: list[str],
        code: int,
        message: str,
    ) -> None:
        assert main([*argv, "--url", stack.base_url, "--retries", "0"]) == code
        assert message in capsys.readouterr().err

    def test_csv_with_bad_rows_exits_1_and_reports_them(
        self, stack: RunningStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rows = [
            "sepal_length,sepal_width,petal_length,petal_width",
            "5.1,3.5,1.4,0.2",
            "x,3.5,1.4,0.2",
            "6.2,2.9,4.3,1.3",
        ]
        (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
        argv = [
            "predict",
            "iris_classifier",
            "--csv",
            str(tmp_path / "in.csv"),
            "--out",
            str(tmp_path / "out.csv"),
        ]
        assert main([*argv, "--url", stack.base_url]) == 1
        out = capsys.readouterr().out
        assert "3 rows: 2 succeeded, 1 failed" in out and "line 3:" in out
        assert main([*argv, "--url", stack.base_url, "--json"]) == 1
        assert json.loads(capsys.readouterr().out)["failures"][0]["line"] == 3

    def test_bench_and_models(self, stack: RunningStack, capsys: pytest.CaptureFixture[str]) -> None:
        assert (
            main(["bench", "fraud_detector", "-n", "40", "-c", "2", "--json", "--url", stack.base_url]) == 0
        )
        stats = json.loads(capsys.readouterr().out)
        assert stats["n_requests"] == 40 and stats["p99_latency_ms"] >= stats["p50_latency_ms"] > 0
        assert main(["models", "list", "--url", stack.base_url]) == 0
        assert "iris_classifier    2       1, 2" in capsys.readouterr().out
        assert rtml_cli.main(["models", "list", "--url", stack.base_url, "--json"]) == 0
        assert {m["name"] for m in json.loads(capsys.readouterr().out)} >= {
            "iris_classifier",
            "fraud_detector",
        }
