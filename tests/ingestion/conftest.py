"""Fixtures of the ingestion tests: a database connection, and the ingestion worker with no
embedding worker behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from ingestion.settings import IngestionSettings
from tests.support.ingestion_calls import (
    background,
    ingestion_worker_run,
)


@pytest.fixture
async def worker_without_embedding(
    ingestion_settings: IngestionSettings, redis: aioredis.Redis
) -> AsyncIterator[None]:
    """The ingestion worker (jobs and callbacks) with no embedding worker: the gateway
    accepts the chunks, but no vectors come back, so tasks stay in "embedding"."""
    async with background(ingestion_worker_run(ingestion_settings)):
        yield


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
