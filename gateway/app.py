"""The gateway's aiohttp application: `create_app(settings)` builds it, tests run it on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.embedding.v1 import queue_service_pb2_grpc as queue_grpc
from embedpipe.grpc.tracing import client_tracing_interceptors
from embedpipe.http.access_log import KeyRedactingAccessLogger
from embedpipe.http.auth import api_key_middleware
from embedpipe.http.metrics import add_metrics_route, metrics_middleware
from embedpipe.http.probes import PROBE_PATHS, Check, NotReadyError, add_probe_routes
from embedpipe.http.proto_routes import add_proto_routes, rpc
from embedpipe.http.tracing import middlewares_if_tracing
from gateway.errors import gateway_errors
from gateway.generate import ROUTES
from gateway.metrics import METRICS, GatewayMetrics, queue_depth_refresher
from gateway.openai_compat import create_embeddings, list_models
from gateway.openapi import openapi_json
from gateway.settings import GatewaySettings
from gateway.upstream import CHANNEL, EMBEDDING, HEALTH, QUEUE, SETTINGS


async def _grpc_channel(app: web.Application) -> AsyncIterator[None]:
    limit = app[SETTINGS].grpc_max_message_bytes
    channel = grpc.aio.insecure_channel(
        app[SETTINGS].embedding_target,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.keepalive_time_ms", 30_000),
            # Spread calls over every address of the target, e.g. several embedding servers
            # given as "ipv4:127.0.0.1:50051,127.0.0.1:50052".
            ("grpc.lb_policy_name", "round_robin"),
        ],
        # No interceptor of ours unless tracing is on: GatewayMetrics.timed says why.
        interceptors=client_tracing_interceptors(),
    )
    app[CHANNEL] = channel
    app[EMBEDDING] = pb_grpc.EmbeddingServiceStub(channel)
    app[HEALTH] = health_pb2_grpc.HealthStub(channel)
    app[QUEUE] = queue_grpc.QueueServiceStub(channel)
    yield
    await channel.close()


HEALTH_CHECK = rpc(health_pb2.DESCRIPTOR.services_by_name["Health"], "Check")
#: Routes that need no key, on purpose: probes, metrics and the API description.
PUBLIC_PATHS = PROBE_PATHS | {"/metrics", "/openapi.json"}


def _readiness(app: web.Application) -> dict[str, Check]:
    """Ready when the embedding server reports SERVING (it does while its Redis answers)."""

    async def embedding() -> None:
        call = app[HEALTH].Check(health_pb2.HealthCheckRequest(service=""))
        reply = await app[METRICS].timed(HEALTH_CHECK, call)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise NotReadyError("not serving")

    return {"embedding": embedding}


def create_app(settings: GatewaySettings) -> web.Application:
    """The gateway application; the gRPC channel opens and closes with it."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # Outermost first: the metrics see the status the error middleware answered with,
        # and a refused key is answered before the body is read. The gateway checks keys
        # when it knows them; the embedding server checks them again either way and
        # decides which tenant a key may act for.
        middlewares=[
            metrics_middleware,
            *middlewares_if_tracing(PUBLIC_PATHS),
            gateway_errors(settings.unavailable_retry_after_s),
            api_key_middleware(settings.keys, public_paths=PUBLIC_PATHS, service_keys=True),
        ],
        # Keys belong in headers, but one sent in a URL must not reach an access log either.
        handler_args={"access_log_class": KeyRedactingAccessLogger},
    )
    app[SETTINGS] = settings
    process_metrics = add_metrics_route(app, "gateway").process
    app[METRICS] = GatewayMetrics(process_metrics)
    process_metrics.refreshers.append(queue_depth_refresher(app))
    app.cleanup_ctx.append(_grpc_channel)
    add_proto_routes(app, ROUTES)
    app.router.add_post("/v1/embeddings", create_embeddings)
    app.router.add_get("/v1/models", list_models)
    add_probe_routes(app, _readiness)
    app.router.add_get("/openapi.json", openapi_json)
    return app
