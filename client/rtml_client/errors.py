"""The client's error tree. Every error answer of the gateway (``{"error": {"code", "message"}}``)
becomes one of these, carrying the server's message, HTTP status and error code::

    RtmlClientError                  any failure of a call (status/code None when local)
    ├── BadRequest           400     malformed request body
    ├── AuthenticationError  401     no API key, or an unknown or revoked one
    ├── PermissionDenied     403     the API key lacks the endpoint's scope
    ├── ModelNotFound        404     unknown model or version (the message lists what exists)
    ├── Conflict             409     a request_id already in flight
    ├── PayloadTooLarge      413     body over the gateway's limit: send smaller chunks
    ├── InvalidInput         422     wrong feature count, NaN, non-numeric, ... (also local checks)
    ├── RateLimited          429     retried first; raised when retries are exhausted
    ├── Unavailable          503     gateway cannot reach Kafka; retried first
    │   └── ConnectionFailed         no HTTP answer at all (refused, reset); retried first
    ├── Timeout              504     no worker answered by the deadline; also a client-side timeout
    └── ServerError          5xx     anything else the server failed on

``Timeout`` is also a :class:`TimeoutError` and ``ConnectionFailed`` a :class:`ConnectionError`,
so code written against the standard exceptions keeps working.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RtmlClientError(Exception):
    """Base class. ``status`` and ``code`` are the server's (None for errors raised locally)."""

    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.retry_after = retry_after
        self.attempts = 1
        """How many times the call was sent (retries included)."""

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status} {self.code})" if self.status else self.message


class BadRequest(RtmlClientError):
    default_code = "bad_request"


class AuthenticationError(RtmlClientError):
    default_code = "unauthorized"


class PermissionDenied(RtmlClientError):
    default_code = "forbidden"


class ModelNotFound(RtmlClientError):
    default_code = "model_not_found"


class Conflict(RtmlClientError):
    default_code = "conflict"


class PayloadTooLarge(RtmlClientError):
    default_code = "payload_too_large"


class InvalidInput(RtmlClientError):
    default_code = "invalid_input"


class RateLimited(RtmlClientError):
    default_code = "rate_limited"


class Unavailable(RtmlClientError):
    default_code = "unavailable"


class ConnectionFailed(Unavailable, ConnectionError):
    default_code = "connection_failed"


class Timeout(RtmlClientError, TimeoutError):
    default_code = "timeout"


class ServerError(RtmlClientError):
    default_code = "internal"


_BY_STATUS: dict[int, type[RtmlClientError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: ModelNotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: RateLimited,
    503: Unavailable,
    504: Timeout,
}


def error_from_response(
    status: int, body: Any, text: str, retry_after: float | None = None
) -> RtmlClientError:
    """Build the typed error for an error answer; ``body`` is the decoded JSON (or None)."""
    code, message = None, text.strip()[:500] or f"HTTP {status}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code")) if error.get("code") is not None else None
        message = str(error.get("message", message))
    kind = _BY_STATUS.get(status)
    if kind is None:
        kind = ServerError if status >= 500 else RtmlClientError
    return kind(message, status=status, code=code, retry_after=retry_after)
