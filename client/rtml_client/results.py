"""Typed results that are also plain dicts.

Each result is a ``dict`` holding the gateway's JSON fields under their documented names, with
typed read-only properties on top. So ``result.prediction`` type-checks, while the original
product description's code keeps working unchanged: ``result['prediction']``,
``result.get('from_cache')``, ``json.dumps(result)``. A few of that description's other names are
accepted as aliases for reading (``result['cache_hit']`` is ``from_cache``).
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar, cast

Label = int | float | str
T = TypeVar("T")


class Result(dict[str, Any]):
    """A dict with typed accessors; unknown keys raise ``KeyError`` as usual."""

    aliases: ClassVar[dict[str, str]] = {}

    def __missing__(self, key: str) -> Any:
        alias = self.aliases.get(key)
        if alias is not None and alias in self:
            return self[alias]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"

    def _as(self, key: str, kind: type[T]) -> T:
        return cast(T, self.get(key))


class PredictionResult(Result):
    """One prediction. ``latency_ms`` is the round trip measured by the client (as in the original
    description's client); the gateway's own figure is ``server_latency_ms``."""

    aliases: ClassVar[dict[str, str]] = {"cache_hit": "from_cache"}

    @property
    def prediction(self) -> Label:
        return cast(Label, self["prediction"])

    @property
    def probability(self) -> float | None:
        return cast(float | None, self.get("probability"))

    @property
    def probabilities(self) -> list[float] | None:
        return cast(list[float] | None, self.get("probabilities"))

    @property
    def model_name(self) -> str:
        return self._as("model_name", str)

    @property
    def model_version(self) -> str:
        return self._as("model_version", str)

    @property
    def route(self) -> str | None:
        """Why this version answered: ``default``, ``split`` (an A/B arm) or ``pinned``."""
        return cast(str | None, self.get("route"))

    @property
    def request_id(self) -> str:
        return self._as("request_id", str)

    @property
    def timestamp(self) -> float:
        return self._as("timestamp", float)

    @property
    def from_cache(self) -> bool:
        return bool(self.get("from_cache", False))

    @property
    def latency_ms(self) -> float:
        return self._as("latency_ms", float)

    @property
    def server_latency_ms(self) -> float | None:
        return cast(float | None, self.get("server_latency_ms"))


class BatchResult(Result):
    """Predictions for many rows, in input order. ``total_latency_ms`` is the client's round trip
    (summed wall time when several chunks were sent); ``server_total_latency_ms`` the gateway's."""

    aliases: ClassVar[dict[str, str]] = {"cache_hit": "from_cache"}

    @property
    def predictions(self) -> list[Label]:
        return cast(list[Label], self["predictions"])

    @property
    def probabilities(self) -> list[list[float]] | None:
        return cast(list[list[float]] | None, self.get("probabilities"))

    @property
    def model_name(self) -> str:
        return self._as("model_name", str)

    @property
    def model_version(self) -> str:
        return self._as("model_version", str)

    @property
    def count(self) -> int:
        return int(self.get("count", len(self.predictions)))

    @property
    def from_cache(self) -> bool:
        return bool(self.get("from_cache", False))

    @property
    def total_latency_ms(self) -> float:
        return self._as("total_latency_ms", float)


class BenchmarkResult(Result):
    """Latency statistics of successful requests (milliseconds) and throughput over the run."""

    @property
    def n_requests(self) -> int:
        return self._as("n_requests", int)

    @property
    def n_errors(self) -> int:
        return self._as("n_errors", int)

    @property
    def concurrency(self) -> int:
        return self._as("concurrency", int)

    @property
    def mean_latency_ms(self) -> float:
        return self._as("mean_latency_ms", float)

    @property
    def p50_latency_ms(self) -> float:
        return self._as("p50_latency_ms", float)

    @property
    def p95_latency_ms(self) -> float:
        return self._as("p95_latency_ms", float)

    @property
    def p99_latency_ms(self) -> float:
        return self._as("p99_latency_ms", float)

    @property
    def max_latency_ms(self) -> float:
        return self._as("max_latency_ms", float)

    @property
    def throughput_rps(self) -> float:
        return self._as("throughput_rps", float)


class ModelInfo(Result):
    """``GET /api/v1/models/{name}`` (full) or one entry of ``GET /api/v1/models`` (summary: no
    feature names, classes or metrics)."""

    @property
    def name(self) -> str:
        return self._as("name", str)

    @property
    def latest_version(self) -> str:
        return self._as("latest_version", str)

    @property
    def default_version(self) -> str | None:
        """The version that answers requests naming none (its traffic policy may split them)."""
        return cast(str | None, self.get("default_version"))

    @property
    def versions(self) -> list[str]:
        return cast(list[str], self.get("versions", []))

    @property
    def task(self) -> str:
        return self._as("task", str)

    @property
    def n_features(self) -> int:
        return self._as("n_features", int)

    @property
    def feature_names(self) -> list[str] | None:
        return cast(list[str] | None, self.get("feature_names"))

    @property
    def classes(self) -> list[Label] | None:
        return cast(list[Label] | None, self.get("classes"))

    @property
    def metrics(self) -> dict[str, float]:
        return cast(dict[str, float], self.get("metrics") or {})


class Health(Result):
    """``GET /health``; truthy when the gateway process says it is alive."""

    def __bool__(self) -> bool:
        return bool(self.get("status") == "ok")

    @property
    def status(self) -> str:
        return self._as("status", str)

    @property
    def uptime_s(self) -> float:
        return self._as("uptime_s", float)


class Readiness(Result):
    """``GET /ready`` (200 or 503 alike); truthy when the gateway can serve now."""

    def __bool__(self) -> bool:
        return bool(self.get("ready", False))

    @property
    def ready(self) -> bool:
        return bool(self)

    @property
    def reasons(self) -> list[str]:
        return cast(list[str], self.get("reasons", []))

    @property
    def cache(self) -> str | None:
        return cast(str | None, self.get("cache"))


class CsvReport(Result):
    """Outcome of :meth:`BatchPredictor.predict_from_csv`. ``failures`` lists the first 100
    failed rows as ``{"line": <line number in the input file, header = 1>, "error": ...}``;
    every failed row also carries its message in the output's ``error`` column."""

    @property
    def rows(self) -> int:
        return self._as("rows", int)

    @property
    def succeeded(self) -> int:
        return self._as("succeeded", int)

    @property
    def failed(self) -> int:
        return self._as("failed", int)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.get("failures", []))

    @property
    def column_mapping(self) -> str:
        return self._as("column_mapping", str)

    @property
    def output_path(self) -> str | None:
        return cast(str | None, self.get("output_path"))

    @property
    def elapsed_s(self) -> float:
        return self._as("elapsed_s", float)


class EvaluationReport(Result):
    """:meth:`ModelEvaluator.evaluate`. Classifiers: ``accuracy``, ``precision``, ``recall``,
    ``f1_score`` (alias ``f1``), ``roc_auc`` (None without probabilities), ``confusion_matrix``
    (rows: true label, columns: predicted, in ``labels`` order), ``per_class``. Regressors:
    ``mae``, ``mse``, ``rmse``, ``r2``."""

    aliases: ClassVar[dict[str, str]] = {"f1": "f1_score"}

    @property
    def task(self) -> str:
        return self._as("task", str)

    @property
    def accuracy(self) -> float | None:
        return cast(float | None, self.get("accuracy"))

    @property
    def f1_score(self) -> float | None:
        return cast(float | None, self.get("f1_score"))

    @property
    def roc_auc(self) -> float | None:
        return cast(float | None, self.get("roc_auc"))

    @property
    def confusion_matrix(self) -> list[list[int]] | None:
        return cast(list[list[int]] | None, self.get("confusion_matrix"))

    @property
    def rmse(self) -> float | None:
        return cast(float | None, self.get("rmse"))


class DriftReport(Result):
    """:meth:`ModelEvaluator.detect_drift`: ``overall_drift``, ``drifted_features`` and, per
    feature, ``psi``, ``js_distance``, ``ks_statistic``, ``ks_pvalue``, ``ks_pvalue_adjusted``,
    ``mean_shift`` and ``drifted``."""

    @property
    def overall_drift(self) -> bool:
        return bool(self.get("overall_drift", False))

    @property
    def drifted_features(self) -> list[str]:
        return cast(list[str], self.get("drifted_features", []))

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return cast(dict[str, dict[str, Any]], self.get("features", {}))
