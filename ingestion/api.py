"""The ingestion API process: `create_app(settings)` builds the HTTP front; on start-up it
opens the backends and serves the gRPC front beside it, on the same core. Tests run both
on port 0 (the bound gRPC port is then `app[GRPC_PORT]`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from embedpipe.http.access_log import KeyRedactingAccessLogger
from embedpipe.http.metrics import HTTP_METRICS, add_metrics_route
from embedpipe.http.probes import Check, add_probe_routes
from embedpipe.http.proto_routes import add_proto_routes
from ingestion import routes
from ingestion.console import add_console_routes
from ingestion.core.backends import open_backends
from ingestion.grpc_api import create_grpc_server
from ingestion.http import BACKENDS, SETTINGS, middlewares
from ingestion.openapi import openapi_json
from ingestion.settings import IngestionSettings
from ingestion.websocket import events_socket

GRPC_PORT = web.AppKey("grpc_port", int)
#: Seconds gRPC calls in flight get to end when the process stops.
GRPC_GRACE_S = 5.0


async def _resources(app: web.Application) -> AsyncIterator[None]:
    async with open_backends(app[SETTINGS], app[HTTP_METRICS].process) as backends:
        app[BACKENDS] = backends
        grpc_server = await create_grpc_server(backends)
        await grpc_server.start()
        app[GRPC_PORT] = grpc_server.port
        try:
            yield
        finally:
            await grpc_server.stop(GRPC_GRACE_S)


def _readiness(app: web.Application) -> dict[str, Check]:
    """Ready when PostgreSQL and Redis answer."""
    backends = app[BACKENDS]
    return {"postgres": lambda: backends.pool.fetchval("SELECT 1"), "redis": backends.redis.ping}


def create_app(settings: IngestionSettings) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_upload_bytes + 64 * 1024,
        middlewares=middlewares(settings),
        # A WebSocket's key may be in its URL: any access log must not show it.
        handler_args={"access_log_class": KeyRedactingAccessLogger},
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_resources)
    add_metrics_route(app, "ingestion")
    add_proto_routes(app, routes.ROUTES)
    r = app.router
    r.add_get("/api/v1/ws", events_socket)
    add_probe_routes(app, _readiness)
    r.add_get("/openapi.json", openapi_json)
    add_console_routes(app)
    return app
