"""Operational routes: liveness and readiness."""

from __future__ import annotations

import asyncio

from aiohttp import web
from grpc_health.v1 import health_pb2

from gateway.upstream import HEALTH, REDIS

READY_CHECK_TIMEOUT_S = 1.0


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the embedding server reports SERVING and Redis answers."""
    checks: dict[str, str] = {}
    try:
        reply = await request.app[HEALTH].Check(
            health_pb2.HealthCheckRequest(service=""), timeout=READY_CHECK_TIMEOUT_S
        )
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        checks["embedding"] = "ok" if serving else "not serving"
    except Exception as exc:  # any failure means "not ready", whatever it was
        checks["embedding"] = f"unreachable: {type(exc).__name__}"
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            await request.app[REDIS].ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )
