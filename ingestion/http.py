"""HTTP plumbing of the ingestion API: typed app keys, the tenant of a request, and the
one mapping of `IngestionError` (and anything unexpected) to JSON error responses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import grpc
import redis.asyncio as aioredis
from aiohttp import web

from embedpipe.auth import API_KEY_QUERY, SERVICE_TENANT, key_from_headers
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.http_errors import Violation, error_body
from embedpipe.redis_conn import RETRYABLE_ERRORS
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
HTTP = web.AppKey("http", aiohttp.ClientSession)
TENANT = web.RequestKey("tenant_id", str)

#: Used when no API key is configured (development only).
DEFAULT_TENANT = "default"

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
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tenant_of(request: web.Request) -> str:
    """The tenant the authentication middleware found for this request."""
    tenant: str = request[TENANT]
    return tenant


def not_found(what: str) -> IngestionError:
    """Ids another tenant owns are reported exactly like ids that do not exist."""
    return IngestionError(IngestionErrorCode.NOT_FOUND, f"{what} not found")


def _response(status: int, message: str, field: str | None = None) -> web.Response:
    violations = [Violation(field, message)] if field else []
    return web.json_response(error_body(status, message, violations), status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error; nothing a client sends yields a 500."""
    try:
        return await handler(request)
    except IngestionError as exc:
        status = HTTP_STATUS.get(exc.code, 500)
        return _response(status, exc.message, exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _response(exc.status, exc.reason)
    except (asyncpg.DataError, ClientDataError) as exc:
        # Text PostgreSQL cannot store (NUL, broken UTF-8), or a value asyncpg cannot
        # encode, that a check missed: the client's input, so a 400, never a 500 (nor a
        # 503: the client-side DataError is an InterfaceError, which means "unavailable").
        log.warning("input refused by the database path=%s error=%r", request.path, exc)
        return _response(400, "the request holds characters that cannot be stored")
    except (*DATABASE_UNAVAILABLE, *RETRYABLE_ERRORS) as exc:
        log.warning(
            "dependency unavailable method=%s path=%s error=%r", request.method, request.path, exc
        )
        response = _response(503, "a backing service is unavailable; retry shortly")
        response.headers["Retry-After"] = "1"
        return response
    except Exception:
        log.exception("unhandled error method=%s path=%s", request.method, request.path)
        return _response(500, "internal error")


OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
#: Browsers cannot set headers on a WebSocket, so there the key may come as `?api_key=`.
QUERY_KEY_PATHS = frozenset({"/api/v1/ws"})


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the request's tenant from its API key (header, or `api_key` for WebSockets)."""
    if request.path in OPEN_PATHS:
        return await handler(request)
    keys = request.app[SETTINGS].keys
    if not keys.enabled:
        request[TENANT] = DEFAULT_TENANT
        return await handler(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    key = key_from_headers(headers)
    if key is None and request.path in QUERY_KEY_PATHS:
        key = request.query.get(API_KEY_QUERY)
    tenant = keys.tenant_for(key)
    if tenant is None:
        raise IngestionError(
            IngestionErrorCode.UNAUTHENTICATED,
            "a valid API key is required (Authorization: Bearer <key>, or X-API-Key)",
        )
    if tenant == SERVICE_TENANT:
        raise IngestionError(
            IngestionErrorCode.UNAUTHENTICATED, "a service key has no tenant; use a tenant's key"
        )
    request[TENANT] = tenant
    return await handler(request)


def check_storable(value: object, field: str) -> None:
    """Refuse text PostgreSQL cannot store (NUL) or UTF-8 cannot carry (lone surrogates),
    anywhere in a JSON value, naming the field."""
    if isinstance(value, str):
        if "\x00" in value:
            raise IngestionError(
                IngestionErrorCode.INVALID_ARGUMENT, "must not contain NUL characters", field=field
            )
        try:
            value.encode()
        except UnicodeEncodeError:
            raise IngestionError(
                IngestionErrorCode.INVALID_ARGUMENT, "is not valid Unicode text", field=field
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, field)
            check_storable(item, field)
    elif isinstance(value, list):
        for item in value:
            check_storable(item, field)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object: 415 for another content type, 400 for anything else."""
    if request.content_type != "application/json":
        raise IngestionError(
            IngestionErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type must be application/json, not {request.content_type!r}",
        )
    try:
        body = await request.json()
    except ValueError as exc:
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, f"not valid JSON: {exc}", field="body"
        ) from None
    if not isinstance(body, dict):
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, "must be a JSON object", field="body"
        )
    return body
