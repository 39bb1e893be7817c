"""Trace context over gRPC: a server span per call, child of the `traceparent` the caller
sent in its metadata, and a client span per outgoing call that sends its own.

Installed only when tracing is on (embedpipe/tracing.py); health and reflection calls are
not traced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from opentelemetry.trace import SpanKind

from embedpipe import tracing
from embedpipe.grpc.calls import method_name
from embedpipe.grpc.layers import Context, Layer

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


def _span_name(method: str) -> str:
    """`/pkg.Service/Method` as OpenTelemetry names RPC spans: `pkg.Service/Method`."""
    return method.removeprefix("/")


class TracingLayer(Layer):
    """A server span around every call of our services."""

    def applies_to(self, method: str) -> bool:
        return not method.startswith("/grpc.")

    def scope(self, method: str, context: Context) -> contextlib.AbstractContextManager[object]:
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        return tracing.span(
            _span_name(method),
            parent=tracing.context_from_headers(metadata),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": method},
        )


def tracing_layers() -> list[Layer]:
    """`[TracingLayer()]` when tracing is on, else nothing (no cost per call)."""
    return [TracingLayer()] if tracing.enabled() else []


def client_tracing_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """`[TracingClientInterceptor()]` when tracing is on, else nothing."""
    return [TracingClientInterceptor()] if tracing.enabled() else []


class TracingClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """A client span around every unary call, its `traceparent` sent in the metadata."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request],
            Awaitable[grpc.aio.UnaryUnaryCall[_Request, _Response]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryUnaryCall[_Request, _Response]:
        name = method_name(client_call_details)
        if name.startswith("/grpc."):
            return await continuation(client_call_details, request)
        with tracing.span(_span_name(name), kind=SpanKind.CLIENT) as span:
            metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
            metadata.add(tracing.TRACEPARENT, tracing.traceparent())
            details: Any = client_call_details
            call = await continuation(details._replace(metadata=metadata), request)
            code = await call.code()
            if span is not None:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
            return call
