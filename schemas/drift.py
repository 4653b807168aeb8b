"""Drift alerts: one :class:`DriftAlert` per state change on ``rtml.drift.alerts``.

Written by the drift app (``drift/``), read by ``rtml alerts tail|forward`` and
any other subscriber. A statistic that stays over its threshold for K window
steps fires an alert; one that stays under for K steps resolves it. Both records
carry the same ``alert_id`` (the episode), which PagerDuty uses as its dedup key;
``event_id`` is unique per record, so redelivered records can be dropped.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1

AlertStatus = Literal["firing", "resolved"]
Severity = Literal["warning", "critical"]
SubjectKind = Literal["feature", "output"]
Statistic = Literal["psi", "js_distance", "mean_shift", "missing_rate", "out_of_range_rate"]


class BaselineReference(BaseModel):
    """Which reference distribution the window was compared with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    version: str
    onnx_sha256: str
    """Identifies the registered model version whose metadata holds the baseline."""
    count: int = Field(ge=0)
    """Rows the baseline was computed from."""
    value: float | None = None
    """The baseline's own value of the statistic's quantity (mean, missing rate), when it has one."""


class DriftAlert(BaseModel):
    """A drift alert started (``firing``, or a severity escalation) or ended (``resolved``)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "alert_id": "3f1c2a9d0b7e4c55",
                    "event_id": "3f1c2a9d0b7e4c55:firing:critical",
                    "status": "firing",
                    "severity": "critical",
                    "model": "fraud_detector",
                    "version": "1",
                    "subject": "amount",
                    "subject_kind": "feature",
                    "statistic": "psi",
                    "value": 0.31,
                    "threshold": 0.2,
                    "p_value": 1e-12,
                    "window_start_ms": 1796000000000,
                    "window_end_ms": 1796000300000,
                    "sample_count": 61234,
                    "baseline": {
                        "model": "fraud_detector",
                        "version": "1",
                        "onnx_sha256": "ab" * 32,
                        "count": 4000,
                    },
                    "message": "fraud_detector v1 feature 'amount': psi 0.310 >= 0.2 (critical)",
                    "emitted_at_ms": 1796000301234,
                }
            ]
        },
    )

    schema_version: Literal[1] = SCHEMA_VERSION
    alert_id: str = Field(min_length=1, max_length=64)
    """Stable id of the episode: same for its firing and resolved records; the PagerDuty dedup key."""
    event_id: str = Field(min_length=1, max_length=128)
    """Unique per state change (``alert_id:status:severity``): subscribers deduplicate on it."""
    status: AlertStatus
    severity: Severity
    """For resolved records, the highest severity the episode reached."""
    model: str
    version: str
    subject: str
    """Feature name, or ``prediction`` / ``confidence`` for the model's outputs."""
    subject_kind: SubjectKind
    statistic: Statistic
    value: float
    """The statistic over the window that caused this state change."""
    threshold: float
    """Threshold crossed (firing) or the level it stayed under (resolved)."""
    p_value: float | None = None
    """Holm-adjusted p-value of the window's test, when the statistic has one."""
    window_start_ms: int
    """Event time (``predicted_at_ms``) window: start inclusive, Unix ms."""
    window_end_ms: int
    """Window end, exclusive, Unix ms."""
    sample_count: int = Field(ge=0)
    """Prediction-log records of this model version in the window."""
    baseline: BaselineReference
    message: str
    """One human-readable line for chat and pagers."""
    emitted_at_ms: int
    """Wall-clock time the drift app produced the record (not part of any id)."""


class AlertDeadLetter(BaseModel):
    """An alert ``rtml alerts forward`` could not deliver after its retries (or could not read)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    reason: Literal["delivery_failed", "invalid_alert"]
    message: str
    """What failed, per destination."""
    failed: dict[str, str] = Field(default_factory=dict)
    """Destination (slack, pagerduty) -> last error."""
    alert: DriftAlert | None = None
    """The alert, when it could be read."""
    value: str
    """Original record bytes, base64-encoded, so it can be replayed."""
    topic: str
    partition: int
    offset: int
    failed_at_ms: int


ALL_DRIFT_MESSAGES: dict[str, type[BaseModel]] = {
    "drift_alert": DriftAlert,
    "alert_dead_letter": AlertDeadLetter,
}
