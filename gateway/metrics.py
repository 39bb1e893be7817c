"""Prometheus metrics of the gateway, served at `GET /metrics` with its request metrics
(embedpipe/http/metrics.py: `embedpipe_gateway_requests_total`, ...).

Every app has a registry of its own, so several gateways in one process (the tests) do not
share counters.

- `embedpipe_gateway_upstream_calls_total{method,code}` and
  `embedpipe_gateway_upstream_duration_seconds{method}`: every gRPC call the gateway makes,
  timed by `GatewayMetrics.timed`;
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
from aiohttp import web
from google.protobuf.descriptor import MethodDescriptor
from prometheus_client import Counter, Gauge, Histogram

from embedpipe.embedding.v1 import queue_service_pb2 as queue_pb
from embedpipe.grpc.calls import full_method_name
from embedpipe.http.proto_routes import rpc
from embedpipe.metrics import LATENCY_BUCKETS, ProcessMetrics
from gateway.upstream import QUEUE

log = logging.getLogger(__name__)

_Reply = TypeVar("_Reply")

QUEUE_DEPTH_TIMEOUT_S = 1.0
GET_QUEUE_STATS = rpc(queue_pb.DESCRIPTOR.services_by_name["QueueService"], "GetQueueStats")


class GatewayMetrics:
    """The gateway's own metrics, in its process registry."""

    def __init__(self, process: ProcessMetrics) -> None:
        registry = process.registry
        self.upstream_calls = Counter(
            "embedpipe_gateway_upstream_calls_total",
            "gRPC calls to the embedding server, by full method name and status code.",
            ("method", "code"),
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "embedpipe_gateway_upstream_duration_seconds",
            "Duration of gRPC calls to the embedding server, by full method name.",
            ("method",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "embedpipe_jobs_queue_depth",
            "Jobs accepted and not yet finished; -1 if the embedding server cannot tell.",
            registry=registry,
        )

    async def timed(self, method: MethodDescriptor, call: Awaitable[_Reply]) -> _Reply:
        """The reply of a gRPC `call` to `method`, timed to its end and counted by status
        code, under the method's full name (`/pkg.Service/Method`).

        Not a client interceptor: grpc.aio runs every call on an intercepted channel through
        its interceptor machinery, which cost the gateway 30 to 45 µs of CPU per accepted
        job of about 600 (`make bench-gateway`, 2026-12-04).
        """
        name, start = full_method_name(method), time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            reply = await call
            code = grpc.StatusCode.OK
            return reply
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self.upstream_calls.labels(name, code.name).inc()
            self.upstream_duration.labels(name).observe(time.perf_counter() - start)


METRICS = web.AppKey("metrics", GatewayMetrics)


def queue_depth_refresher(app: web.Application) -> Callable[[], Awaitable[None]]:
    """Sets `embedpipe_jobs_queue_depth` from the embedding server, at each scrape."""

    async def refresh() -> None:
        try:
            reply = await app[METRICS].timed(
                GET_QUEUE_STATS,
                app[QUEUE].GetQueueStats(
                    queue_pb.GetQueueStatsRequest(), timeout=QUEUE_DEPTH_TIMEOUT_S
                ),
            )
            depth = int(reply.jobs_queued)
        except grpc.aio.AioRpcError as exc:  # a scrape must succeed whatever the upstream does
            log.warning("queue depth unavailable code=%s", exc.code().name)
            depth = -1
        app[METRICS].queue_depth.set(depth)

    return refresh
