"""The gateway's connection to the embedding server: typed app keys and per-call options."""

from __future__ import annotations

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2_grpc

from embedpipe.auth import AUTHORIZATION, X_API_KEY
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.embedding.v1 import queue_service_pb2_grpc as queue_grpc
from embedpipe.http.errors import HttpError
from gateway.settings import GatewaySettings

SETTINGS = web.AppKey("settings", GatewaySettings)
CHANNEL = web.AppKey("channel", grpc.aio.Channel)
# The async stub type exists only in the generated .pyi, hence the annotation form.
EMBEDDING: web.AppKey[pb_grpc.EmbeddingServiceAsyncStub] = web.AppKey("embedding")
HEALTH = web.AppKey("health", health_pb2_grpc.HealthStub)
QUEUE: web.AppKey[queue_grpc.QueueServiceAsyncStub] = web.AppKey("queue")

#: Optional request header: the caller's time budget in seconds.
TIMEOUT_HEADER = "X-Request-Timeout"


def forwarded_identity(request: web.Request) -> tuple[tuple[str, str], ...]:
    """The caller's API key as gRPC metadata; the embedding server decides what it may do.

    A value gRPC cannot carry (not printable ASCII) would make the call fail before it
    starts, with no deadline to end it; no key of ours looks like that, so it is a 401.
    """
    metadata = []
    for name in (AUTHORIZATION, X_API_KEY):
        if name not in request.headers:
            continue
        value = request.headers[name]
        if not (value.isascii() and value.isprintable()):
            raise HttpError(401, f"the {name} header is not a valid API key")
        metadata.append((name, value))
    return tuple(metadata)


def deadline_s(request: web.Request) -> float:
    """The request's time budget: the configured one, or less if the caller asks."""
    budget = request.app[SETTINGS].request_timeout_s
    asked = request.headers.get(TIMEOUT_HEADER)
    if asked is None:
        return budget
    try:
        value = float(asked)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise HttpError.bad_field(
            TIMEOUT_HEADER, f"must be a positive number of seconds, not {asked!r}"
        )
    return min(budget, value)
