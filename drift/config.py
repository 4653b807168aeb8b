"""Per model version: what to measure (layout) and how (windows, thresholds), from settings.

:class:`Catalog` is an immutable snapshot built from the model registry and
``settings.drift``; the drift app swaps in a new one every
``registry_refresh_s``, so new versions are picked up without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from drift.layout import Layout, layout_for
from runtime.errors import DriftConfigError
from runtime.settings import DriftModelSettings, DriftSettings, DriftThresholds
from schemas.model_metadata import ModelMetadata

SkipReason = Literal["unknown_model", "no_baseline", "disabled"]
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    model: str
    version: str
    layout: Layout
    onnx_sha256: str
    step_ms: int
    window_ms: int
    allowed_lateness_ms: int
    min_samples: int
    debounce_steps: int
    resolve_ratio: float
    family_alpha: float
    thresholds: DriftThresholds

    @property
    def steps_per_window(self) -> int:
        return self.window_ms // self.step_ms

    def step_of(self, event_ms: int) -> int:
        """Start of the step holding ``event_ms``."""
        return event_ms - event_ms % self.step_ms


def window_ms(window_s: float, step_s: float, model: str = "default") -> tuple[int, int]:
    """(window, step) in ms; refuses a window that is not a positive multiple of the step."""
    window, step = round(window_s * 1000), round(step_s * 1000)
    if step <= 0 or window < step or window % step:
        raise DriftConfigError(
            f"drift window of {model!r} is {window_s}s with step {step_s}s; "
            "the window must be a whole number (>= 1) of steps"
        )
    return window, step


def _first(value: T | None, default: T) -> T:
    return default if value is None else value


def plan_for(meta: ModelMetadata, settings: DriftSettings) -> Plan | SkipReason:
    override = settings.models.get(meta.name) or DriftModelSettings()
    if not override.enabled:
        return "disabled"
    layout = layout_for(meta)
    if layout is None:
        return "no_baseline"
    window_s = _first(override.window_s, settings.window_s)
    window, step = window_ms(window_s, _first(override.step_s, settings.step_s), meta.name)
    return Plan(
        model=meta.name,
        version=meta.version,
        layout=layout,
        onnx_sha256=meta.onnx_sha256,
        step_ms=step,
        window_ms=window,
        allowed_lateness_ms=round(settings.allowed_lateness_s * 1000),
        min_samples=_first(override.min_samples, settings.min_samples),
        debounce_steps=_first(override.debounce_steps, settings.debounce_steps),
        resolve_ratio=settings.resolve_ratio,
        family_alpha=settings.family_alpha,
        thresholds=_first(override.thresholds, settings.thresholds),
    )


@dataclass(frozen=True)
class Catalog:
    plans: dict[tuple[str, str], Plan | SkipReason]

    @classmethod
    def build(cls, snapshot: dict[str, dict[str, ModelMetadata]], settings: DriftSettings) -> Catalog:
        window_ms(settings.window_s, settings.step_s)
        plans = {
            (name, version): plan_for(meta, settings)
            for name, versions in snapshot.items()
            for version, meta in versions.items()
        }
        return cls(plans)

    def lookup(self, model: str, version: str) -> Plan | SkipReason:
        return self.plans.get((model, version), "unknown_model")
