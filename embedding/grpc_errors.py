"""The one mapping of `EmbeddingError` to gRPC statuses.

The server's `ErrorLayer` (embedpipe/grpc/errors.py) applies it: bad fields travel
as google.rpc.BadRequest details, waits as `retry-after` metadata.
"""

from __future__ import annotations

import grpc

from embedding.errors import EmbeddingError, ErrorCode
from embedpipe.grpc.errors import RpcError

STATUS_BY_CODE: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNKNOWN_MODEL: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.INPUT_TOO_LONG: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.PROVIDER_RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.PROVIDER_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.PROVIDER_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.PROVIDER_REJECTED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.PROVIDER_FAILED: grpc.StatusCode.INTERNAL,
    ErrorCode.QUEUE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.NOT_READY: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.MAX_DELIVERIES_EXCEEDED: grpc.StatusCode.INTERNAL,
    ErrorCode.INVALID_JOB: grpc.StatusCode.INTERNAL,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.BACKLOG_FULL: grpc.StatusCode.UNAVAILABLE,
}


def translate(error: Exception) -> RpcError | None:
    """The status of an `EmbeddingError`; None for anything else (answered INTERNAL)."""
    if not isinstance(error, EmbeddingError):
        return None
    return RpcError(
        STATUS_BY_CODE[error.code],
        error.message,
        violations=error.violations,
        retry_after_s=error.retry_after_s,
    )
