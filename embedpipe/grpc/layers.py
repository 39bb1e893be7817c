"""Layers of our gRPC servers (errors, guard, tracing) around every method, put there once.

A server's methods get their layers when they are registered: a `LayeredServer` is a
grpc.aio server that registers each method handler (by the generated
`add_*Servicer_to_server` functions, and grpc's health and reflection ones) wrapped in its
layers, outermost first. They are not grpc.aio server interceptors: grpc.aio runs its interceptor
chain on every call, which cost the embedding server about 30 µs of CPU per accepted job
of 600 (`make bench-gateway`, 2026-12-04); a wrapped handler costs only its own frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias, cast

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


Context = grpc.aio.ServicerContext[Any, Any]
#: A unary or client-streaming method's behaviour: (request or request iterator, context).
Behavior = Callable[[Any, Context], Any]


class Layer:
    """What a server does around the methods it applies to; `wrap` puts it around one.

    Hooks for one call: `scope` a context the call runs in (for a response stream, the
    whole stream), `before` code run before the method, `failed` the exceptions leaving it.
    """

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

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """`handler` of `method` with this layer around its behaviour."""
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


class LayeredServer(grpc.aio.Server):
    """A grpc.aio server whose registered methods come wrapped in `layers`, outermost
    first; everything else is the server's own."""

    def __init__(self, server: grpc.aio.Server, layers: Sequence[Layer]) -> None:
        self._server = server
        self._layers = tuple(reversed(layers))  # innermost first: the order of wrapping
        self._wrapped: dict[tuple[str, int], Handler] = {}

    def _wrap(self, method: str, handler: Handler) -> Handler:
        key = (method, id(handler))
        found = self._wrapped.get(key)
        if found is None:
            found = handler
            for layer in self._layers:
                if layer.applies_to(method):
                    found = layer.wrap(found, method)
            self._wrapped[key] = found
        return found

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Handler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name,
            {name: self._wrap(f"/{service_name}/{name}", h) for name, h in method_handlers.items()},
        )

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]
    ) -> None:
        self._server.add_generic_rpc_handlers(
            [_LayeredGeneric(h, self._wrap) for h in generic_rpc_handlers]
        )

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return await self._server.wait_for_termination(timeout)


class _LayeredGeneric(grpc.GenericRpcHandler):
    """A generic handler whose handlers come wrapped (for methods not registered by name)."""

    def __init__(
        self, inner: grpc.GenericRpcHandler, wrap: Callable[[str, Handler], Handler]
    ) -> None:
        self._inner = inner
        self._wrap = wrap

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        return self._wrap(handler_call_details.method, handler)
