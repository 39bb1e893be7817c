"""gRPC errors of our servers: one status shape, mapped once per server by `ErrorLayer`.

A service maps its own domain error to an `RpcError` (`translate`); the layer turns
that into a google.rpc.Status with the bad fields as google.rpc.BadRequest details (so any
client can name every bad field without parsing text) and `retry-after` trailing metadata
when there is a wait. Any other exception is logged with its traceback and answered
INTERNAL without internals. Every kind of method is covered: unary and streaming.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from embedpipe.grpc.layers import Context, Layer
from embedpipe.violations import FieldViolation

log = logging.getLogger(__name__)

#: Trailing metadata key telling clients when to retry, in whole seconds.
RETRY_AFTER_KEY = "retry-after"


class RpcError(Exception):
    """A call answered with `code`: a message for people, the bad fields, a wait."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        violations: Sequence[FieldViolation] = (),
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.violations = tuple(violations)
        self.retry_after_s = retry_after_s


def to_status(error: RpcError) -> status_pb2.Status:
    """The rich google.rpc.Status of an error, with field violations as BadRequest."""
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    if error.violations:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
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


def grpc_status(error: RpcError) -> grpc.Status:
    """The status to abort with: rich details, plus `retry-after` when there is a wait."""
    rich = rpc_status.to_status(to_status(error))
    metadata = tuple(rich.trailing_metadata)
    retry_after_s = error.retry_after_s
    if retry_after_s is None and error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # A rate limit always says when to retry: that is also how clients tell it from
        # gRPC's own RESOURCE_EXHAUSTED for an over-size message.
        retry_after_s = 1.0
    if retry_after_s is not None:
        # Whole seconds, rounded up: a client that waits this long finds room.
        metadata += ((RETRY_AFTER_KEY, str(max(1, math.ceil(retry_after_s)))),)
    return _Status(rich.code, rich.details, metadata)


Translate = Callable[[Exception], RpcError | None]


class ErrorLayer(Layer):
    """Turns what methods raise into statuses: `RpcError`s as they are, a service's own
    errors as `translate` maps them, anything else INTERNAL (logged)."""

    def __init__(self, translate: Translate = lambda error: None) -> None:
        self.translate = translate

    async def failed(self, method: str, error: Exception, context: Context) -> None:
        mapped = error if isinstance(error, RpcError) else self.translate(error)
        if mapped is not None:
            await context.abort_with_status(grpc_status(mapped))
        log.error("unhandled error method=%s", method, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
