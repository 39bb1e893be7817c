"""The ingestion service's calls to the embedding server: its failures as ours.

A failed call maps by class (embedpipe/http/upstream.py): the client's bad input stays
INVALID_ARGUMENT naming the client's own field, a rate limit is RATE_LIMITED, an outage
UNAVAILABLE, a spent deadline DEADLINE_EXCEEDED, each with the wait the server asked for.
Anything else (our service key refused, a bug upstream) is the embedding service failing:
EMBEDDING_FAILED, never blamed on the client.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from embedpipe.http.upstream import http_error
from ingestion.errors import IngestionError, IngestionErrorCode

#: Seconds a call to the embedding server may take.
CALL_TIMEOUT_S = 10.0

_CODE_BY_STATUS = {
    400: IngestionErrorCode.INVALID_ARGUMENT,
    413: IngestionErrorCode.PAYLOAD_TOO_LARGE,
    429: IngestionErrorCode.RATE_LIMITED,
    503: IngestionErrorCode.UNAVAILABLE,
    504: IngestionErrorCode.DEADLINE_EXCEEDED,
}


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
