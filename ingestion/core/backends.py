"""What the ingestion operations work with: the database, Redis, the embedding server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import redis.asyncio as aioredis

from embedpipe.auth import AUTHORIZATION
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as embedding_grpc
from embedpipe.grpc.tracing import client_tracing_interceptors
from embedpipe.metrics import ProcessMetrics
from embedpipe.rate_limit import RateLimiter
from embedpipe.redis_conn import connect as connect_redis
from ingestion.db import ITERATIVE_SCAN_VERSION, Pool, pgvector_version
from ingestion.db import connect as connect_db
from ingestion.keys import IngestionKeys
from ingestion.metrics import ApiMetrics
from ingestion.settings import IngestionSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backends:
    settings: IngestionSettings
    pool: Pool
    redis: aioredis.Redis
    keys: IngestionKeys
    # The async stub type exists only in the generated .pyi.
    embedding: embedding_grpc.EmbeddingServiceAsyncStub
    #: Each tenant's rate limit, shared by the HTTP and gRPC fronts (None: no limit).
    limiter: RateLimiter | None
    #: Whether pgvector can scan its indexes iteratively (>= 0.8); else searches are exact.
    iterative_scan: bool
    metrics: ApiMetrics

    @property
    def embedding_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata carrying the service key, if one is configured."""
        key = self.settings.service_key
        return ((AUTHORIZATION, f"Bearer {key}"),) if key else ()


@asynccontextmanager
async def open_backends(
    settings: IngestionSettings, metrics: ProcessMetrics
) -> AsyncIterator[Backends]:
    """The backends, their figures in `metrics` (the process's registry)."""
    pool = await connect_db(settings.database_url)
    redis = connect_redis(settings.redis_url)
    channel = grpc.aio.insecure_channel(
        settings.embedding_grpc_target, interceptors=client_tracing_interceptors()
    )
    keys = IngestionKeys(settings.key_prefix)
    limiter = None
    if settings.rate_limit_per_s > 0:
        limiter = RateLimiter(
            redis, keys.rate_limit, per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst
        )
    version = await pgvector_version(pool)
    iterative_scan = version >= ITERATIVE_SCAN_VERSION
    if not iterative_scan:
        log.warning(
            "pgvector %s has no iterative index scans: every search runs exactly over its "
            "collection (complete and correct, but slower on large collections); "
            "upgrade to pgvector >= 0.8",
            ".".join(map(str, version)),
        )
    try:
        yield Backends(
            settings, pool, redis, keys, embedding_grpc.EmbeddingServiceStub(channel),
            limiter, iterative_scan, ApiMetrics(metrics, pool),
        )  # fmt: skip
    finally:
        await channel.close()
        await redis.aclose()
        await pool.close()
