"""gRPC health that follows readiness: a server's services are SERVING while its check
passes, NOT_SERVING while it fails, re-checked every few seconds (like `/readyz`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def follow_readiness(
    servicer: health.aio.HealthServicer,
    services: Sequence[str],
    ready: Callable[[], Awaitable[bool]],
    interval_s: float,
) -> None:
    """Runs until cancelled; a check that raises counts as not ready (and is logged)."""
    serving: bool | None = None
    while True:
        try:
            now = await ready()
        except Exception as exc:
            log.warning("readiness check failed error=%s", exc)
            now = False
        if now != serving:
            for name in services:
                await servicer.set(name, SERVING if now else NOT_SERVING)
            log.info("health changed serving=%s services=%s", now, ",".join(services))
            serving = now
        await asyncio.sleep(interval_s)
