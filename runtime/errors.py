"""The one error tree: every exception the server side raises on purpose is defined here.

Each error knows its HTTP status, its stable code and its dead-letter reason, so the
gateway's single exception handler, the workers' error policy and the command line
map them the same way::

    class                       status code               reason           raised when
    RtmlError                   500 internal              model_error      anything unexpected
    ├── BadRequest              400 bad_request           invalid_request  malformed JSON, wrong shape,
    │   │                                                                  an envelope failing its schema
    │   └── Undecodable         400 undecodable           undecodable      a Kafka value empty or not JSON
    ├── PayloadTooLarge         413 payload_too_large     invalid_request  body over the gateway's limit
    ├── InvalidInput            422 invalid_input         invalid_input    feature count, NaN, non-numeric
    ├── NotFound                404 not_found             .                an unknown route
    │   ├── DriftStateMissing                                              no drift statistics yet
    │   └── ModelNotFound *     404 model_not_found       unknown_model    unknown model name
    │       ├── VersionNotFound                                            known model, unknown version
    │       └── ArtifactMissing                                            no complete artifact on Kafka
    ├── Unauthorized            401 unauthorized          invalid_request  no API key, or unknown/revoked
    ├── Forbidden               403 forbidden             invalid_request  the key lacks the endpoint's scope
    ├── RateLimited             429 rate_limited          invalid_request  over a key's or a model's rate
    ├── MethodNotAllowed        405 method_not_allowed    .                a known route, another method
    ├── RequestIdInUse          409 conflict              invalid_request  request_id already in flight
    ├── Unavailable             503 unavailable           .                Kafka or Redis unreachable
    │   └── QueueFull                                                      a producer's queue stayed full
    ├── DeadlineExceeded        504 timeout               expired          no reply (or read) in time
    ├── ModelError              500 model_error           model_error      the runtime failed on valid input
    ├── RegistryError           500 internal              .                the model registry
    │   ├── ModelNotFound *                                                (drawn above)
    │   ├── VersionExists       409 version_exists        .                register() of an existing version
    │   ├── InvalidModel        422 invalid_model         .                bad ONNX bytes or metadata.json
    │   ├── PolicyConflict      409 policy_conflict       .                a lifecycle change that cannot
    │   │                                                                  apply (retire the default ...)
    │   └── ChecksumMismatch ** 500 model_error           model_error      model.onnx differs from its sha256
    ├── SettingsError           500 settings_error        .                settings refused (also ValueError)
    │   └── DriftConfigError                                               drift windows that cannot work
    ├── ModelImportError        422 import_failed         .                rtml models import; nothing kept
    │   ├── SourceNotFound      404                                        no such file, dir, MLflow version
    │   ├── UnreadableModel                                                corrupt, or not the format named
    │   ├── NotAModel                                                      loads, holds no supported model
    │   ├── UnsupportedModel                                               no ONNX conversion for it
    │   ├── MissingExtra                                                   framework not installed (.extra)
    │   ├── BadSample                                                      the --sample file does not fit
    │   └── ParityFailed                                                   ONNX differs from the original
    ├── InfraError              500 infra_error           .                rtml infra (also RuntimeError)
    │   ├── PrerequisiteMissing                                            java, mvn, redis-server missing
    │   ├── PortInUse                                                      a port held by someone else
    │   ├── StartupFailed                                                  our process exited, never ready
    │   │   └── StartupTimeout                                             ... not ready by its deadline
    │   ├── NotOurProcess                                                  a PID file names another process
    │   └── ServiceUnreachable                                             an external service is silent
    └── DriftError              500 drift_error           .                rtml drift, rtml alerts
        ├── TotalsMismatch                                                 wrong sizes (also ValueError)
        ├── BadRecord                                                      bad log record (also ValueError)
        └── DeliveryError                                                  alert POST failed (.retryable)

    *  ModelNotFound is also a RegistryError: the registry raises it, and whatever
       catches registry errors keeps catching it.
    ** ChecksumMismatch is also a ModelError.
    QueueFull is also a BufferError, what confluent-kafka raises for a full queue.

Blank cells inherit from the parent. A code is declared by exactly one class; its
subclasses refine the meaning and keep the code, so :func:`from_code` rebuilds the
declaring class. "." marks a dead-letter reason no worker writes: the class inherits
``model_error``. Errors that used to be a ValueError or RuntimeError still are, so
``except ValueError`` / ``except RuntimeError`` code keeps catching them.
:data:`HTTP_ERRORS` lists what an HTTP client can receive.

Messages name the offending field and value and say what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from schemas.messages import DeadLetterReason
    from schemas.model_metadata import ParityReport


class RtmlError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    dead_letter_reason: ClassVar[DeadLetterReason] = "model_error"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        """Sent as ``Retry-After`` (whole seconds, at least 1) with the HTTP answer, when set."""

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}

    def http_headers(self) -> dict[str, str]:
        """Headers the HTTP answer carries besides the body (``Retry-After`` when set)."""
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


# -- requests: the gateway's answers and the workers' dead letters -----------------


class BadRequest(RtmlError):
    status = 400
    code = "bad_request"
    dead_letter_reason: ClassVar[DeadLetterReason] = "invalid_request"  # Undecodable overrides it


class Undecodable(BadRequest):
    """A Kafka message whose value is empty or not JSON at all."""

    code = "undecodable"
    dead_letter_reason = "undecodable"


class PayloadTooLarge(RtmlError):
    status = 413
    code = "payload_too_large"
    dead_letter_reason = "invalid_request"


class InvalidInput(RtmlError):
    status = 422
    code = "invalid_input"
    dead_letter_reason = "invalid_input"


class NotFound(RtmlError):
    """The path names nothing this gateway serves."""

    status = 404
    code = "not_found"


class DriftStateMissing(NotFound):
    """The model exists but the drift app has published no statistics for it yet."""


class Unauthorized(RtmlError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    code = "unauthorized"
    dead_letter_reason = "invalid_request"

    def http_headers(self) -> dict[str, str]:
        return {**super().http_headers(), "WWW-Authenticate": 'Bearer realm="rtml"'}


class Forbidden(RtmlError):
    """A valid API key without the scope the endpoint needs."""

    status = 403
    code = "forbidden"
    dead_letter_reason = "invalid_request"


class RateLimited(RtmlError):
    """Over a key's or a model's request rate (shared by every gateway)."""

    status = 429
    code = "rate_limited"
    dead_letter_reason = "invalid_request"

    def __init__(self, message: str, retry_after_s: float | None = 1.0, limit: float = 0.0) -> None:
        super().__init__(message, retry_after_s)
        self.limit = limit

    def http_headers(self) -> dict[str, str]:
        reset = str(max(1, math.ceil(self.retry_after_s or 0)))
        return {
            **super().http_headers(),
            "RateLimit-Limit": f"{self.limit:g}",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": reset,
        }


class MethodNotAllowed(RtmlError):
    status = 405
    code = "method_not_allowed"


class RequestIdInUse(RtmlError):
    status = 409
    code = "conflict"
    dead_letter_reason = "invalid_request"


class Unavailable(RtmlError):
    status = 503
    code = "unavailable"


class QueueFull(Unavailable, BufferError):
    """A producer's local queue stayed full for its profile's whole wait."""


class DeadlineExceeded(RtmlError):
    status = 504
    code = "timeout"
    dead_letter_reason = "expired"


class ModelError(RtmlError):
    status = 500
    code = "model_error"
    dead_letter_reason = "model_error"


# -- the model registry -------------------------------------------------------------


class RegistryError(RtmlError):
    """Base of every registry error."""


class ModelNotFound(NotFound, RegistryError):
    """No model of that name is registered (or served here)."""

    code = "model_not_found"
    dead_letter_reason = "unknown_model"


class VersionNotFound(ModelNotFound):
    """The model exists but not in that version."""


class ArtifactMissing(ModelNotFound):
    """The artifact topic holds no complete copy of that version (runtime/artifacts.py)."""


class VersionExists(RegistryError):
    status = 409
    code = "version_exists"


class InvalidModel(RegistryError):
    status = 422
    code = "invalid_model"


class PolicyConflict(RegistryError):
    """A lifecycle change that contradicts the model's state: retiring its default, rolling back
    with no earlier default, routing traffic to a retired version."""

    status = 409
    code = "policy_conflict"


class ChecksumMismatch(RegistryError, ModelError):
    """model.onnx differs from metadata.onnx_sha256."""


# -- settings ---------------------------------------------------------------------


class SettingsError(RtmlError, ValueError):
    """Settings that cannot be used; the message names every offending key and says why."""

    code = "settings_error"


class DriftConfigError(SettingsError):
    """Drift window settings that cannot work (the window is not a whole number of steps)."""


# -- rtml models import -------------------------------------------------------------


class ModelImportError(RtmlError):
    status = 422
    code = "import_failed"


class SourceNotFound(ModelImportError):
    status = 404


class UnreadableModel(ModelImportError):
    pass


class NotAModel(ModelImportError):
    pass


class UnsupportedModel(ModelImportError):
    pass


class BadSample(ModelImportError):
    pass


class MissingExtra(ModelImportError):
    """A heavy framework is optional; the message names the extra that brings it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'rtml[{extra}]'"
        )
        self.module = module
        self.extra = extra


class ParityFailed(ModelImportError):
    """The ONNX graph does not reproduce the original model's predictions.

    ``report`` is the parity report when one was computed (``rtml models import``);
    the demo models' quick check raises without one."""

    def __init__(self, message: str, report: ParityReport | None = None) -> None:
        super().__init__(message)
        self.report = report


# -- rtml infra ---------------------------------------------------------------------


class InfraError(RtmlError, RuntimeError):
    """Local Kafka/Redis provisioning failed; the message says what to do."""

    code = "infra_error"


class PrerequisiteMissing(InfraError):
    """A program we need (java, mvn, redis-server) is not installed."""


class PortInUse(InfraError):
    """A port we want to listen on is taken by a process we did not start."""


class StartupFailed(InfraError):
    """A process we started exited or never became ready."""


class StartupTimeout(StartupFailed):
    """A process we started did not become ready before its deadline."""


class NotOurProcess(InfraError):
    """A PID file names a process whose command line is not ours: never signal it."""


class ServiceUnreachable(InfraError):
    """An external service named by the environment does not answer."""


# -- rtml drift and rtml alerts -----------------------------------------------------


class DriftError(RtmlError):
    code = "drift_error"


class TotalsMismatch(DriftError, ValueError):
    """Totals whose array sizes do not fit the layout (metadata changed, or a bad message)."""


class BadRecord(DriftError, ValueError):
    """A prediction-log record the detector cannot use."""


class DeliveryError(DriftError):
    """An alert could not be delivered; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


HTTP_ERRORS: tuple[type[RtmlError], ...] = (
    RtmlError,
    BadRequest,
    PayloadTooLarge,
    InvalidInput,
    NotFound,
    DriftStateMissing,
    ModelNotFound,
    VersionNotFound,
    MethodNotAllowed,
    RequestIdInUse,
    Unavailable,
    DeadlineExceeded,
    ModelError,
    PolicyConflict,
    Unauthorized,
    Forbidden,
    RateLimited,
)
"""Every error the gateway answers an HTTP request with, directly or rebuilt from a
worker's error reply; the client SDK maps each of them."""


def error_classes() -> Iterator[type[RtmlError]]:
    """Every class of the tree, depth first, each once."""
    seen: set[type[RtmlError]] = set()
    stack: list[type[RtmlError]] = [RtmlError]
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.add(cls)
            yield cls
            stack.extend(reversed(cls.__subclasses__()))


_BY_CODE: dict[str, type[RtmlError]] = {cls.code: cls for cls in error_classes() if "code" in vars(cls)}


def from_code(code: str, message: str) -> RtmlError:
    """Rebuild an error carried in a reply (``ErrorInfo``) as the class that declares ``code``."""
    return _BY_CODE.get(code, RtmlError)(message)
