"""Operational routes: liveness and readiness."""

from __future__ import annotations

from aiohttp import web
from grpc_health.v1 import health_pb2

from embedpipe.readiness import NotReadyError, readiness_response
from gateway.upstream import HEALTH

READY_CHECK_TIMEOUT_S = 1.0


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the embedding server reports SERVING (it does while its Redis answers)."""

    async def embedding() -> None:
        reply = await request.app[HEALTH].Check(health_pb2.HealthCheckRequest(service=""))
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise NotReadyError("not serving")

    return await readiness_response({"embedding": embedding}, READY_CHECK_TIMEOUT_S)
