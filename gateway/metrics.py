"""Prometheus metrics of the gateway, served at `GET /metrics`.

Every app has a registry of its own (`METRICS`), so several gateways in one process (the
tests) do not share counters. Labels hold bounded values only: a request's route is its
path template (never the raw path), and an unknown HTTP method counts as "other".

- `embedpipe_gateway_requests_total{route,method,status}` and
  `embedpipe_gateway_request_duration_seconds{route,method}`: from `metrics_middleware`,
  which sits outside the error middleware and so sees the status the client got;
- `embedpipe_gateway_upstream_calls_total{method,code}` and
  `embedpipe_gateway_upstream_duration_seconds{method}`: every gRPC call on the gateway's
  channel, timed by `UpstreamMetricsInterceptor`;
- `embedpipe_jobs_queue_depth`: jobs accepted and not yet finished, asked of the embedding
  server's QueueService when scraped (-1 when it does not answer, so an outage never fails
  the scrape).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from embedpipe.embedding.v1 import queue_service_pb2 as queue_pb
from gateway.upstream import QUEUE

log = logging.getLogger(__name__)

#: 1 ms to 10 s: health checks answer in a millisecond, a large batch may take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Route label of requests that matched no route (404, 405).
UNMATCHED = "unmatched"
#: Status label of requests whose handler was cancelled (nginx's "client closed request").
CANCELLED_STATUS = 499
QUEUE_DEPTH_TIMEOUT_S = 1.0
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class GatewayMetrics:
    """The metrics of one gateway app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedpipe_gateway_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "embedpipe_gateway_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_calls = Counter(
            "embedpipe_gateway_upstream_calls_total",
            "gRPC calls to the embedding server, by full method name and status code.",
            ("method", "code"),
            registry=self.registry,
        )
        self.upstream_duration = Histogram(
            "embedpipe_gateway_upstream_duration_seconds",
            "Duration of gRPC calls to the embedding server, by full method name.",
            ("method",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "embedpipe_jobs_queue_depth",
            "Jobs accepted and not yet finished; -1 if the embedding server cannot tell.",
            registry=self.registry,
        )


METRICS = web.AppKey("metrics", GatewayMetrics)


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
        metrics = request.app[METRICS]
        route, method = route_label(request), method_label(request.method)
        metrics.requests.labels(route, method, str(status)).inc()
        metrics.request_duration.labels(route, method).observe(time.perf_counter() - start)


_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class UpstreamMetricsInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Times each unary gRPC call to its end and counts it by status code."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request],
            Awaitable[grpc.aio.UnaryUnaryCall[_Request, _Response]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryUnaryCall[_Request, _Response]:
        method = client_call_details.method
        # grpc.aio passes the method as bytes, though the stubs say str.
        name = method.decode() if isinstance(method, bytes) else method
        start = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            call = await continuation(client_call_details, request)
            # Waits for the end of the call without raising; the caller awaits the call.
            code = await call.code()
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self._metrics.upstream_calls.labels(name, code.name).inc()
            self._metrics.upstream_duration.labels(name).observe(time.perf_counter() - start)
        return call


async def _queue_depth(request: web.Request) -> int:
    try:
        reply = await request.app[QUEUE].GetQueueStats(
            queue_pb.GetQueueStatsRequest(), timeout=QUEUE_DEPTH_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:  # a scrape must succeed whatever the upstream does
        log.warning("queue depth unavailable code=%s", exc.code().name)
        return -1
    return int(reply.jobs_queued)


async def metrics_handler(request: web.Request) -> web.StreamResponse:
    """`GET /metrics`: Prometheus text format (OpenMetrics if the scraper asks for it)."""
    metrics = request.app[METRICS]
    metrics.queue_depth.set(await _queue_depth(request))
    # prometheus_client.aiohttp does the same, but is missing from 0.23 and older.
    encode, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
    return web.Response(body=encode(metrics.registry), headers={hdrs.CONTENT_TYPE: content_type})
