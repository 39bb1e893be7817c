"""Whatever an operation raised, as an `IngestionError` (or None: a bug, answered as such).

Both fronts map errors through this one function, so a failure reads the same over HTTP
and gRPC: input the database refused is the client's (INVALID_ARGUMENT), a dependency that
is down is UNAVAILABLE, to retry.
"""

from __future__ import annotations

import logging

import asyncpg

from embedpipe.redis_conn import RETRYABLE_ERRORS
from ingestion.db import DATABASE_UNAVAILABLE, ClientDataError
from ingestion.errors import IngestionError, IngestionErrorCode

log = logging.getLogger(__name__)


def as_ingestion_error(exc: Exception) -> IngestionError | None:
    if isinstance(exc, IngestionError):
        return exc
    if isinstance(exc, asyncpg.DataError | ClientDataError):
        # Text PostgreSQL cannot store, or a value asyncpg cannot encode, that a check
        # missed: the client's input (the client-side DataError is an InterfaceError,
        # which would otherwise read as "unavailable").
        log.warning("input refused by the database error=%r", exc)
        return IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT,
            "the request holds characters that cannot be stored",
        )
    if isinstance(exc, (*DATABASE_UNAVAILABLE, *RETRYABLE_ERRORS)):
        log.warning("dependency unavailable error=%r", exc)
        return IngestionError(
            IngestionErrorCode.UNAVAILABLE,
            "a backing service is unavailable; retry shortly",
            retry_after_s=1,
        )
    return None
