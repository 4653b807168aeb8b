"""The control plane's messages: which version of a model serves, and how traffic is shared.

Topics:
- ``rtml.control`` (compacted, one partition, keyed by model name): the latest
  :class:`ModelPolicy` of every model. Every gateway and worker reads it from the start at boot
  and follows it, so a change reaches every process (and a process started later sees the same
  state) without a restart.
- ``rtml.model-events`` (one partition): one :class:`ModelEvent` per change, for subscribers
  (dashboards, chat-ops, audit). Nothing reads it to decide anything.

A model without a policy record (a registry from before the control plane) is served as it
always was: its highest version is the default.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.model_metadata import NAME_PATTERN, VERSION_PATTERN

Version = Annotated[str, Field(pattern=VERSION_PATTERN)]
Percent = Annotated[int, Field(ge=0, le=100)]

Route = Literal["default", "split", "pinned", "shadow", "canary"]
"""Why a version served a request, carried by requests and prediction records:
``default`` the model's default version; ``split`` an arm of a weighted A/B split; ``pinned`` the
request named the version; ``shadow`` a mirrored copy whose answer nobody sees; ``canary`` the
candidate of a running canary."""

ROUTES: tuple[Route, ...] = ("default", "split", "pinned", "shadow", "canary")


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CanaryLimits(_Message):
    """When a canary is rolled back on its own (judged over the fleet's last minute of traffic)."""

    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    """Fraction of the candidate's requests that failed in the model."""
    max_p99_ratio: float = Field(default=2.0, gt=0)
    """The candidate's p99 latency may be at most this multiple of the default version's (+5 ms)."""
    max_p99_ms: float | None = Field(default=None, gt=0)
    """An absolute bound on the candidate's p99 latency, if set."""
    max_shift: float = Field(default=0.25, ge=0, le=1)
    """Largest total variation distance between the candidate's and the default's prediction
    distributions (classifiers and clustering: share of each label)."""
    min_requests: int = Field(default=50, ge=1)
    """Requests the candidate must have answered before a step is judged (and before it ends)."""


class CanaryState(_Message):
    """A canary ramp: the candidate takes ``steps[step]`` percent of the traffic, step after step,
    and becomes the default after the last one, unless it crosses a limit first."""

    version: Version
    baseline: Version
    """The default version when the canary started: what the candidate is compared with."""
    steps: list[Percent] = Field(min_length=1)
    step_s: float = Field(gt=0)
    step: int = Field(default=0, ge=0)
    step_started_at_ms: int
    limits: CanaryLimits = Field(default_factory=CanaryLimits)
    status: Literal["running", "promoted", "rolled_back"] = "running"
    reason: str = ""
    """Why it ended (the limit crossed, with the figures), or what it is waiting for."""

    @property
    def share(self) -> int:
        return self.steps[min(self.step, len(self.steps) - 1)]


class ModelPolicy(_Message):
    """The whole serving state of one model (the value of its ``rtml.control`` record)."""

    schema_version: Literal[1] = 1
    kind: Literal["model_policy"] = "model_policy"
    model: str = Field(pattern=NAME_PATTERN)
    revision: int = Field(ge=0)
    """Increases by one with every change (the first record is 1); a process applies a record only
    if it is newer than the one it has."""
    default: Version | None = None
    """The version that answers requests not routed elsewhere; None only before a first promote."""
    previous: list[Version] = Field(default_factory=list)
    """Earlier defaults, oldest first: ``rollback`` returns to the last one."""
    retired: list[Version] = Field(default_factory=list)
    """Versions that serve nothing, even when a request names them."""
    versions: dict[Version, str] = Field(default_factory=dict)
    """Registered versions -> the SHA-256 of their ONNX artifact. A process that lacks one locally
    fetches it from the artifact topic and loads it only if its bytes hash to this."""
    split: dict[Version, Percent] = Field(default_factory=dict)
    """Weighted A/B split, version -> percent of the traffic, summing to 100; empty: all to default."""
    shadow: dict[Version, Percent] = Field(default_factory=dict)
    """Version -> percent of the traffic mirrored to it; shadow answers go to the log only."""
    canary: CanaryState | None = None
    """The running canary, or the last one (with how it ended)."""
    updated_at_ms: int
    updated_by: str = ""
    change: str = ""
    """What the last change did, in words (shown by ``rtml models status``)."""

    @property
    def running_canary(self) -> CanaryState | None:
        return self.canary if self.canary is not None and self.canary.status == "running" else None

    @model_validator(mode="after")
    def _consistent(self) -> ModelPolicy:
        if self.split and sum(self.split.values()) != 100:
            raise ValueError(f"split weights sum to {sum(self.split.values())}, not 100")
        if self.default is not None and self.default in self.retired:
            raise ValueError(f"the default version {self.default} is retired")
        routed = set(self.split) | set(self.shadow)
        if self.running_canary is not None:
            routed.add(self.running_canary.version)
            if self.split:
                raise ValueError("a canary and a split cannot run at once")
        if clash := sorted(routed & set(self.retired), key=int):
            raise ValueError(f"retired version(s) {', '.join(clash)} still receive traffic")
        return self


EventAction = Literal["registered", "promoted", "rolled_back", "retired", "traffic", "canary"]


class ModelEvent(_Message):
    """One change of a model's serving state (the ``rtml.model-events`` topic)."""

    schema_version: Literal[1] = 1
    kind: Literal["model_event"] = "model_event"
    model: str
    action: EventAction
    revision: int
    version: str | None = None
    """The version the change was about (promoted, retired, registered ...)."""
    default: str | None = None
    """The default version after the change."""
    detail: str
    """What happened and why, in words."""
    at_ms: int
    by: str = ""


ALL_CONTROL_MESSAGES: dict[str, type[BaseModel]] = {"model_policy": ModelPolicy, "model_event": ModelEvent}
