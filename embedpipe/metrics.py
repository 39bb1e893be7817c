"""Prometheus metrics of our processes: one registry per process, served as `GET /metrics`.

Processes with an HTTP front (the gateway, the ingestion API) add the route to their app;
the others (the embedding server, the workers) serve it on a port of their own
(`METRICS_PORT`, off when unset) from the same event loop, so what is asked of Redis or
PostgreSQL when scraped (queue depth, tasks by status) is asked by a coroutine: the
`refreshers` set their gauges before the registry is written out. A refresher that fails
leaves its gauges as they were and never fails the scrape.

Names follow Prometheus conventions: `embedpipe_` first, the unit in the name
(`_seconds`, `_tokens`), `_total` on counters; labels hold bounded values only (models,
statuses, codes, route templates: never ids).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from embedpipe.envconfig import variable

log = logging.getLogger(__name__)

#: 1 ms to 10 s: health checks answer in a millisecond, a large batch may take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The time a refresher gets at each scrape.
REFRESH_TIMEOUT_S = 2.0

Refresher = Callable[[], Awaitable[None]]


@dataclass
class ProcessMetrics:
    """A process's registry and what brings its scraped gauges up to date."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    refreshers: list[Refresher] = field(default_factory=list)

    async def refresh(self) -> None:
        for refresher in self.refreshers:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await refresher()
            except Exception as exc:  # a scrape must succeed whatever a backend does
                log.warning("metrics refresh failed refresher=%s error=%r", refresher, exc)


async def metrics_response(request: web.Request, metrics: ProcessMetrics) -> web.Response:
    """The registry in Prometheus text format (OpenMetrics if the scraper asks for it)."""
    await metrics.refresh()
    encode, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
    return web.Response(body=encode(metrics.registry), headers={hdrs.CONTENT_TYPE: content_type})


@dataclass(frozen=True)
class MetricsSettings:
    """Where a process without an HTTP front of its own serves `GET /metrics`."""

    port: Annotated[int | None, variable("METRICS_PORT", ge=0, le=65535)] = None
    host: Annotated[str, variable("METRICS_HOST")] = "127.0.0.1"


@asynccontextmanager
async def serving_metrics(
    metrics: ProcessMetrics, settings: MetricsSettings
) -> AsyncIterator[int | None]:
    """`GET /metrics` on the settings' host and port while inside (nothing when no port is
    set; 0 picks a free one); yields the bound port."""
    host, port = settings.host, settings.port
    if port is None:
        yield None
        return
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return await metrics_response(request, metrics)

    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound: int = runner.addresses[0][1]
    log.info("metrics served url=http://%s:%d/metrics", host, bound)
    try:
        yield bound
    finally:
        await runner.cleanup()
