"""HTTP plumbing of the ingestion API: typed app keys, the API-key middleware's settings, and
the one mapping of `IngestionError` (and of unavailable dependencies) to HTTP errors."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from embedpipe.http.auth import api_key_middleware
from embedpipe.http.errors import HttpError, error_middleware
from embedpipe.http.metrics import metrics_middleware
from embedpipe.http.probes import PROBE_PATHS
from embedpipe.http.rate_limit import rate_limit_middleware
from embedpipe.http.tracing import middlewares_if_tracing
from embedpipe.violations import FieldViolation
from ingestion import console
from ingestion.core.backends import Backends
from ingestion.core.failures import as_ingestion_error
from ingestion.errors import IngestionErrorCode
from ingestion.settings import DEFAULT_TENANT, IngestionSettings

SETTINGS = web.AppKey("settings", IngestionSettings)
BACKENDS = web.AppKey("backends", Backends)

PUBLIC_PATHS = PROBE_PATHS | {"/metrics", "/openapi.json"} | console.PATHS
#: Browsers cannot set headers on a WebSocket, so there the key may come as `?api_key=`.
QUERY_KEY_PATHS = frozenset({"/api/v1/ws"})

HTTP_STATUS = {
    IngestionErrorCode.INVALID_ARGUMENT: 400,
    IngestionErrorCode.UNAUTHENTICATED: 401,
    IngestionErrorCode.PERMISSION_DENIED: 403,
    IngestionErrorCode.NOT_FOUND: 404,
    IngestionErrorCode.CONFLICT: 409,
    IngestionErrorCode.FAILED_PRECONDITION: 409,
    IngestionErrorCode.PAYLOAD_TOO_LARGE: 413,
    IngestionErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    IngestionErrorCode.UNPROCESSABLE: 422,
    IngestionErrorCode.RATE_LIMITED: 429,
    IngestionErrorCode.EMBEDDING_FAILED: 502,
    IngestionErrorCode.UNAVAILABLE: 503,
    IngestionErrorCode.DEADLINE_EXCEEDED: 504,
}


def to_http(exc: Exception) -> HttpError | None:
    """Our errors by their code; anything else is unexpected (None)."""
    error = as_ingestion_error(exc)
    if error is None:
        return None
    violations = [FieldViolation(error.field, error.message)] if error.field else []
    return HttpError(
        HTTP_STATUS.get(error.code, 500),
        error.message,
        violations=violations,
        retry_after_s=error.retry_after_s,
    )


def middlewares(settings: IngestionSettings) -> list[Middleware]:
    """Metrics outermost (they see the status the client got), then errors, so that a
    refused key is answered in the same shape; the rate limit after the key, which names
    the tenant."""
    return [
        metrics_middleware,
        # Not the event socket: a span would last as long as the client stays.
        *middlewares_if_tracing(PUBLIC_PATHS | QUERY_KEY_PATHS),
        error_middleware(to_http),
        api_key_middleware(
            settings.keys,
            public_paths=PUBLIC_PATHS,
            query_key_paths=QUERY_KEY_PATHS,
            service_keys=False,
            tenant_without_keys=DEFAULT_TENANT,
        ),
        rate_limit_middleware(lambda app: app[BACKENDS].limiter),
    ]
