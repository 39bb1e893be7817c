"""Requests of an HTTP front, counted and timed, and its `GET /metrics` route.

`embedpipe_<service>_requests_total{route,method,status}` and
`embedpipe_<service>_request_duration_seconds{route,method}`, from `metrics_middleware`,
which sits outside the error middleware and so sees the status the client got. A request's
route is its path template (never the raw path: ids stay out of labels), an unknown
method counts as "other".
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from embedpipe.metrics import LATENCY_BUCKETS, ProcessMetrics, metrics_response

#: Route label of requests that matched no route (404, 405).
UNMATCHED = "unmatched"
#: Status label of requests whose handler was cancelled (nginx's "client closed request").
CANCELLED_STATUS = 499
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """The request metrics of one app (`service`: "gateway", "ingestion")."""

    def __init__(self, service: str, process: ProcessMetrics) -> None:
        self.process = process
        self.requests = Counter(
            f"embedpipe_{service}_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=process.registry,
        )
        self.request_duration = Histogram(
            f"embedpipe_{service}_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=process.registry,
        )


HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)


def route_label(request: web.Request) -> str:
    """The matched route's path template, or "unmatched"."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts and times every request by the status its client got."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # what the error middleware lets through (3xx)
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CANCELLED_STATUS
        raise
    finally:
        metrics = request.app[HTTP_METRICS]
        route, method = route_label(request), method_label(request.method)
        metrics.requests.labels(route, method, str(status)).inc()
        metrics.request_duration.labels(route, method).observe(time.perf_counter() - start)


def add_metrics_route(app: web.Application, service: str) -> HttpMetrics:
    """Request metrics for `app` (its middlewares must include `metrics_middleware`) and
    `GET /metrics` serving them with the rest of the process's registry."""
    metrics = app[HTTP_METRICS] = HttpMetrics(service, ProcessMetrics())

    async def handler(request: web.Request) -> web.Response:
        return await metrics_response(request, metrics.process)

    app.router.add_get("/metrics", handler)
    return metrics
