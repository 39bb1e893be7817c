"""The ingestion API's calls to the embedding server: its identity, and its failures as ours.

A failed call maps by class (embedpipe/http/upstream.py): the client's bad input stays a
400 naming the client's own field, a rate limit is 429, an outage 503, a spent deadline 504,
each with the wait the server asked for. Anything else (our service key refused, a bug
upstream) is the embedding service failing: 502, never blamed on the client.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from aiohttp import web

from embedpipe.auth import AUTHORIZATION
from embedpipe.http.upstream import http_error
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.http import SETTINGS

#: Seconds a call to the embedding server may take.
CALL_TIMEOUT_S = 10.0

_CODE_BY_STATUS = {
    400: IngestionErrorCode.INVALID_ARGUMENT,
    413: IngestionErrorCode.PAYLOAD_TOO_LARGE,
    429: IngestionErrorCode.RATE_LIMITED,
    503: IngestionErrorCode.UNAVAILABLE,
    504: IngestionErrorCode.DEADLINE_EXCEEDED,
}


def service_metadata(app: web.Application) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying the service key, if one is configured."""
    key = app[SETTINGS].service_key
    return ((AUTHORIZATION, f"Bearer {key}"),) if key else ()


def embedding_failure(
    error: grpc.aio.AioRpcError, fields: Mapping[str, str] | None = None
) -> IngestionError:
    """`error` as an IngestionError; `fields` renames the server's field paths to ours."""
    mapped = http_error(error, fields=fields)
    code = _CODE_BY_STATUS.get(mapped.status, IngestionErrorCode.EMBEDDING_FAILED)
    message = mapped.message
    if code is IngestionErrorCode.EMBEDDING_FAILED:
        message = f"the embedding service failed: {message}"
    field = mapped.violations[0].field if mapped.violations else None
    return IngestionError(code, message, field, retry_after_s=mapped.retry_after_s)
