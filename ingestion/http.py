"""HTTP plumbing of the ingestion API: typed app keys, the API-key middleware's settings, and
the one mapping of `IngestionError` (and of unavailable dependencies) to HTTP errors."""

from __future__ import annotations

import logging

import asyncpg
import grpc
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Middleware

from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.http.auth import api_key_middleware
from embedpipe.http.errors import HttpError, error_middleware
from embedpipe.http.probes import PROBE_PATHS
from embedpipe.redis_conn import RETRYABLE_ERRORS
from embedpipe.text_safety import text_problem
from embedpipe.violations import FieldViolation
from ingestion.db import DATABASE_UNAVAILABLE, ClientDataError, Pool
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.keys import IngestionKeys
from ingestion.settings import IngestionSettings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", IngestionSettings)
POOL: web.AppKey[Pool] = web.AppKey("pool")
REDIS = web.AppKey("redis", aioredis.Redis)
KEYS = web.AppKey("keys", IngestionKeys)
CHANNEL = web.AppKey("channel", grpc.aio.Channel)
# The async stub type exists only in the generated .pyi, hence the annotation form.
EMBEDDING: web.AppKey[pb_grpc.EmbeddingServiceAsyncStub] = web.AppKey("embedding")

#: The tenant of every request when no API key is configured (development only).
DEFAULT_TENANT = "default"
PUBLIC_PATHS = PROBE_PATHS | {"/openapi.json"}
#: Browsers cannot set headers on a WebSocket, so there the key may come as `?api_key=`.
QUERY_KEY_PATHS = frozenset({"/api/v1/ws"})

HTTP_STATUS = {
    IngestionErrorCode.INVALID_ARGUMENT: 400,
    IngestionErrorCode.UNAUTHENTICATED: 401,
    IngestionErrorCode.PERMISSION_DENIED: 403,
    IngestionErrorCode.NOT_FOUND: 404,
    IngestionErrorCode.CONFLICT: 409,
    IngestionErrorCode.PAYLOAD_TOO_LARGE: 413,
    IngestionErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    IngestionErrorCode.UNPROCESSABLE: 422,
    IngestionErrorCode.RATE_LIMITED: 429,
    IngestionErrorCode.EMBEDDING_FAILED: 502,
    IngestionErrorCode.UNAVAILABLE: 503,
    IngestionErrorCode.DEADLINE_EXCEEDED: 504,
}


def not_found(what: str) -> IngestionError:
    """Ids another tenant owns are reported exactly like ids that do not exist."""
    return IngestionError(IngestionErrorCode.NOT_FOUND, f"{what} not found")


def to_http(exc: Exception) -> HttpError | None:
    """Our errors by their code; input the database refused is the client's (400); a
    dependency that is down is a 503 to retry; anything else is unexpected (None)."""
    if isinstance(exc, IngestionError):
        violations = [FieldViolation(exc.field, exc.message)] if exc.field else []
        status = HTTP_STATUS.get(exc.code, 500)
        return HttpError(
            status, exc.message, violations=violations, retry_after_s=exc.retry_after_s
        )
    if isinstance(exc, asyncpg.DataError | ClientDataError):
        # Text PostgreSQL cannot store, or a value asyncpg cannot encode, that a check
        # missed: the client's input, so a 400, never a 500 (nor a 503: the client-side
        # DataError is an InterfaceError, which means "unavailable").
        log.warning("input refused by the database error=%r", exc)
        return HttpError(400, "the request holds characters that cannot be stored")
    if isinstance(exc, (*DATABASE_UNAVAILABLE, *RETRYABLE_ERRORS)):
        log.warning("dependency unavailable error=%r", exc)
        return HttpError(503, "a backing service is unavailable; retry shortly", retry_after_s=1)
    return None


def middlewares(settings: IngestionSettings) -> list[Middleware]:
    """Errors outermost, so that a refused key is answered in the same shape."""
    return [
        error_middleware(to_http),
        api_key_middleware(
            settings.keys,
            public_paths=PUBLIC_PATHS,
            query_key_paths=QUERY_KEY_PATHS,
            service_keys=False,
            tenant_without_keys=DEFAULT_TENANT,
        ),
    ]


def check_storable(value: object, field: str) -> None:
    """Refuse text PostgreSQL cannot store (NUL) or UTF-8 cannot carry (lone surrogates),
    anywhere in a JSON value, naming the field."""
    if problem := text_problem(value, nul_allowed=False):
        raise IngestionError(IngestionErrorCode.INVALID_ARGUMENT, problem, field=field)
