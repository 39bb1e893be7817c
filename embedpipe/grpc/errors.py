"""gRPC errors of our servers: one status shape, mapped once per server by an interceptor.

A service maps its own domain error to an `RpcError` (`translate`); the interceptor turns
that into a google.rpc.Status with the bad fields as google.rpc.BadRequest details (so any
client can name every bad field without parsing text) and `retry-after` trailing metadata
when there is a wait. Any other exception is logged with its traceback and answered
INTERNAL without internals. Every kind of method is covered: unary and streaming.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

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


Context = grpc.aio.ServicerContext[Any, Any]
#: A unary or client-streaming method's behaviour: (request or request iterator, context).
Behavior = Callable[[Any, Context], Any]
Translate = Callable[[Exception], RpcError | None]


class WrapInterceptor(grpc.aio.ServerInterceptor):
    """Base of our interceptors: wraps every kind of handler, building each wrapper once per
    method (a new handler per call costs measurable CPU at a thousand calls a second).

    Hooks for one call: `scope` a context the call runs in (for a response stream, the
    whole stream), `before` code run before the method, `failed` the exceptions leaving it.
    """

    def __init__(self) -> None:
        self._wrapped: dict[tuple[str, int], grpc.RpcMethodHandler[Any, Any]] = {}

    def applies_to(self, method: str) -> bool:
        return True

    def scope(self, method: str, context: Context) -> contextlib.AbstractContextManager[object]:
        """The context one call runs in (none by default)."""
        return contextlib.nullcontext()

    async def before(self, method: str, request: Any, context: Context) -> None:
        """Runs before the method, with its request (None for a request stream)."""

    async def failed(self, method: str, error: Exception, context: Context) -> None:
        """Called with an exception leaving the method; re-raises it by default."""
        raise error

    def _unary(self, behavior: Behavior, method: str, streaming_request: bool) -> Behavior:
        async def call(request: Any, context: Context) -> Any:
            try:
                with self.scope(method, context):
                    await self.before(method, None if streaming_request else request, context)
                    return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await self.failed(method, error, context)
                raise

        return call

    def _streaming(self, behavior: Behavior, method: str, streaming_request: bool) -> Behavior:
        # A response stream is an async generator (ours) or a coroutine that writes to the
        # context (grpc's health Watch): the wrapper writes either way.
        async def call(request: Any, context: Context) -> None:
            try:
                with self.scope(method, context):
                    await self.before(method, None if streaming_request else request, context)
                    responses = behavior(request, context)
                    if isinstance(responses, AsyncIterator):
                        async for response in responses:
                            await context.write(response)
                    else:
                        await responses
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await self.failed(method, error, context)
                raise

        return call

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.applies_to(method):
            return handler
        key = (method, id(handler))
        cached = self._wrapped.get(key)
        if cached is None:
            cached = self._wrap(handler, method)
            self._wrapped[key] = cached
        return cached

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            behavior = cast(Behavior, handler.unary_unary)
            return grpc.unary_unary_rpc_method_handler(
                self._unary(behavior, method, False), **codec
            )
        if handler.stream_unary is not None:
            behavior = cast(Behavior, handler.stream_unary)
            return grpc.stream_unary_rpc_method_handler(
                self._unary(behavior, method, True), **codec
            )
        if handler.unary_stream is not None:
            behavior = cast(Behavior, handler.unary_stream)
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(behavior, method, False), **codec
            )
        behavior = cast(Behavior, handler.stream_stream)
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(behavior, method, True), **codec
        )


class ErrorInterceptor(WrapInterceptor):
    """Turns what methods raise into statuses: `RpcError`s as they are, a service's own
    errors as `translate` maps them, anything else INTERNAL (logged)."""

    def __init__(self, translate: Translate = lambda error: None) -> None:
        super().__init__()
        self.translate = translate

    async def failed(self, method: str, error: Exception, context: Context) -> None:
        mapped = error if isinstance(error, RpcError) else self.translate(error)
        if mapped is not None:
            await context.abort_with_status(grpc_status(mapped))
        log.error("unhandled error method=%s", method, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
