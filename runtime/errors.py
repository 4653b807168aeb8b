"""The one error tree. Each error knows its HTTP status, its stable code and its
dead-letter reason, so the gateway's single exception handler and the workers'
error policy map them the same way::

    RtmlError                      500 internal
    ├── BadRequest                 400 bad_request        (malformed JSON, wrong shape)
    ├── PayloadTooLarge            413 payload_too_large
    ├── InvalidInput               422 invalid_input      (feature count, NaN, non-numeric)
    ├── ModelNotFound              404 model_not_found    (unknown model or version)
    ├── Unavailable                503 unavailable        (Kafka unreachable, not ready)
    ├── DeadlineExceeded           504 timeout            (no reply by the deadline)
    └── ModelError                 500 model_error        (the runtime failed on valid input)

Messages name the offending field and value and say what was expected.
"""

from __future__ import annotations

from typing import ClassVar


class RtmlError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    dead_letter_reason: ClassVar[str] = "model_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(RtmlError):
    status = 400
    code = "bad_request"
    dead_letter_reason = "invalid_request"


class PayloadTooLarge(RtmlError):
    status = 413
    code = "payload_too_large"
    dead_letter_reason = "invalid_request"


class InvalidInput(RtmlError):
    status = 422
    code = "invalid_input"
    dead_letter_reason = "invalid_input"


class ModelNotFound(RtmlError):
    status = 404
    code = "model_not_found"
    dead_letter_reason = "unknown_model"


class Unavailable(RtmlError):
    status = 503
    code = "unavailable"
    dead_letter_reason = "model_error"


class DeadlineExceeded(RtmlError):
    status = 504
    code = "timeout"
    dead_letter_reason = "expired"


class ModelError(RtmlError):
    status = 500
    code = "model_error"
    dead_letter_reason = "model_error"


_BY_CODE: dict[str, type[RtmlError]] = {
    cls.code: cls
    for cls in (
        RtmlError,
        BadRequest,
        PayloadTooLarge,
        InvalidInput,
        ModelNotFound,
        Unavailable,
        DeadlineExceeded,
        ModelError,
    )
}


def from_code(code: str, message: str) -> RtmlError:
    """Rebuild an error carried in a reply (``ErrorInfo``) as the right class."""
    return _BY_CODE.get(code, RtmlError)(message)
