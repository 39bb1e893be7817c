"""The one error type of the Embedding Service.

Everything that goes wrong in `embedding/` is an `EmbeddingError` with an `ErrorCode`.
Transports map it once: `embedding/grpc_errors.py` to a gRPC status,
the worker to an error callback whose `error_code` is the code's value.
"""

from __future__ import annotations

from enum import StrEnum

from embedpipe.violations import FieldViolation


class ErrorCode(StrEnum):
    """Stable codes; they appear as `error_code` in callbacks, so never rename one."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNKNOWN_MODEL = "UNKNOWN_MODEL"
    INPUT_TOO_LONG = "INPUT_TOO_LONG"
    PROVIDER_RATE_LIMITED = "PROVIDER_RATE_LIMITED"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"
    PROVIDER_REJECTED = "PROVIDER_REJECTED"
    PROVIDER_FAILED = "PROVIDER_FAILED"
    QUEUE_UNAVAILABLE = "QUEUE_UNAVAILABLE"
    MAX_DELIVERIES_EXCEEDED = "MAX_DELIVERIES_EXCEEDED"
    INVALID_JOB = "INVALID_JOB"
    NOT_READY = "NOT_READY"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RATE_LIMITED = "RATE_LIMITED"
    BACKLOG_FULL = "BACKLOG_FULL"


#: Codes worth retrying: the same call may succeed later.
TRANSIENT_CODES = frozenset(
    {
        ErrorCode.PROVIDER_RATE_LIMITED,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.PROVIDER_TIMEOUT,
        ErrorCode.QUEUE_UNAVAILABLE,
        ErrorCode.NOT_READY,
        ErrorCode.RATE_LIMITED,
        ErrorCode.BACKLOG_FULL,
    }
)


class EmbeddingError(Exception):
    """A failure of the Embedding Service, with a code and, for bad input, the bad fields."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        violations: tuple[FieldViolation, ...] = (),
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.violations = violations
        self.retry_after_s = retry_after_s

    @property
    def transient(self) -> bool:
        """Whether retrying the same call may succeed."""
        return self.code in TRANSIENT_CODES

    @classmethod
    def invalid(cls, violations: list[FieldViolation]) -> EmbeddingError:
        """A bad request naming every bad field."""
        message = "; ".join(str(v) for v in violations)
        return cls(ErrorCode.INVALID_ARGUMENT, message, violations=tuple(violations))
