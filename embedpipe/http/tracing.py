"""A server span per HTTP request, child of the `traceparent` header when the client sent
one (else the first span of a new trace). Added to an app only when tracing is on
(`middlewares_if_tracing`); probes and metrics are not traced."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry.trace import SpanKind

from embedpipe import tracing
from embedpipe.http.metrics import route_label


def tracing_middleware(untraced: frozenset[str]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in untraced:
            return await handler(request)
        route = route_label(request)
        with tracing.span(
            f"{request.method} {route}",
            parent=tracing.context_from_headers(request.headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": route},
        ) as span:
            response = await handler(request)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
            return response

    return middleware


def middlewares_if_tracing(untraced: frozenset[str]) -> list[Middleware]:
    """`[tracing_middleware]` when tracing is on, else nothing (no cost per request)."""
    return [tracing_middleware(untraced)] if tracing.enabled() else []
