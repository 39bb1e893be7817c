"""The one mapping of `EmbeddingError` to gRPC statuses, applied by a server interceptor.

Bad fields travel as google.rpc.BadRequest details as well as in the message, so gRPC
clients (and the gateway) can name every bad field without parsing text. Any other
exception is logged with its traceback and answered INTERNAL without internals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from embedding.errors import EmbeddingError, ErrorCode

log = logging.getLogger(__name__)

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

#: Trailing metadata key telling clients when to retry, in whole seconds.
RETRY_AFTER_KEY = "retry-after"


def to_status(exc: EmbeddingError) -> status_pb2.Status:
    """The rich google.rpc.Status for an error, with field violations as BadRequest."""
    code = STATUS_BY_CODE[exc.code]
    status = status_pb2.Status(code=code.value[0], message=exc.message)
    if exc.violations:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in exc.violations
                ]
            )
        )
        status.details.append(detail)
    return status


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def _grpc_status(exc: EmbeddingError) -> grpc.Status:
    """The status to abort with: rich details, plus `retry-after` when there is a wait."""
    rich = rpc_status.to_status(to_status(exc))
    metadata = tuple(rich.trailing_metadata)
    retry_after_s = exc.retry_after_s
    if retry_after_s is None and STATUS_BY_CODE[exc.code] == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # A rate limit always says when to retry: that is also how clients tell it from
        # gRPC's own RESOURCE_EXHAUSTED for an over-size message.
        retry_after_s = 1.0
    if retry_after_s is not None:
        # Whole seconds, rounded up: a client that waits this long finds room.
        metadata += ((RETRY_AFTER_KEY, str(max(1, math.ceil(retry_after_s)))),)
    return _Status(rich.code, rich.details, metadata)


Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def _wrap(behavior: Handler, method: str) -> Handler:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except EmbeddingError as exc:
            await context.abort_with_status(_grpc_status(exc))
        except Exception:
            log.exception("unhandled error method=%s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    return guarded


class UnaryWrapInterceptor(grpc.aio.ServerInterceptor):
    """Base of our interceptors: wraps unary handlers, building each wrapper once per method
    (a new handler per call costs measurable CPU at a thousand calls a second)."""

    def __init__(self) -> None:
        self._wrapped: dict[tuple[str, int], grpc.RpcMethodHandler[Any, Any]] = {}

    def wrap(self, behavior: Handler, method: str) -> Handler | None:
        """The wrapped behavior, or None to leave the method alone."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        key = (method, id(handler))
        cached = self._wrapped.get(key)
        if cached is None:
            behavior = self.wrap(cast(Handler, handler.unary_unary), method)
            if behavior is None:
                return handler
            cached = grpc.unary_unary_rpc_method_handler(
                behavior,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            self._wrapped[key] = cached
        return cached


class ErrorInterceptor(UnaryWrapInterceptor):
    """Turns `EmbeddingError`s raised by unary handlers into statuses."""

    def wrap(self, behavior: Handler, method: str) -> Handler:
        return _wrap(behavior, method)
