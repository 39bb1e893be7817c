"""Nothing is lost when a consumer dies or the embedding service stumbles."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from embedpipe.retry import RetryPolicy
from ingestion.embedding_client import EmbeddingClient
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.keys import IngestionKeys
from ingestion.settings import IngestionSettings
from tests.support.ingestion_calls import (
    DIMENSIONS,
    embedding_task,
    seed_callback,
    staged_chunk_ids,
    wait_task,
)
from tests.support.services import serving_app


async def _success_callback(db: asyncpg.Connection, task: dict[str, Any]) -> dict[str, Any]:
    """The callback the embedding service would send for every chunk the task staged."""
    chunk_ids = await staged_chunk_ids(db, task["task_id"])
    vector = [1.0 / DIMENSIONS**0.5] * DIMENSIONS
    return seed_callback(
        task, "success", embeddings=[{"chunk_id": c, "embedding": vector} for c in chunk_ids]
    )


async def test_callbacks_held_by_a_dead_consumer_are_recovered_and_stored(
    ingestion_api: str,
    ingestion_settings: IngestionSettings,
    worker_without_embedding: None,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    db: asyncpg.Connection,
) -> None:
    task = await embedding_task(http, ingestion_api, "recover", "# Owls\n\nOwls hunt at night.")
    callback = await _success_callback(db, task)
    # A consumer took the callback into its processing list, then died: its heartbeat
    # stopped long ago.
    keys = IngestionKeys()
    await redis.lpush(keys.processing("crashed-consumer"), json.dumps(callback))
    await redis.zadd(
        keys.processing_consumers, {"crashed-consumer": int(time.time() * 1000) - 60_000}
    )

    completed = await wait_task(http, ingestion_api, task["task_id"])
    assert completed["status"] == "completed"
    assert await redis.llen(keys.processing("crashed-consumer")) == 0
    assert await redis.zscore(keys.processing_consumers, "crashed-consumer") is None


async def test_a_callback_left_in_a_live_consumers_own_list_is_applied(
    ingestion_api: str,
    ingestion_settings: IngestionSettings,
    worker_without_embedding: None,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    db: asyncpg.Connection,
) -> None:
    """What a BLMOVE whose reply was lost leaves behind: the callback moved into the
    consumer's processing list while the client, retrying, moved the next one."""
    task = await embedding_task(http, ingestion_api, "lost-reply", "# Bats\n\nBats fly at dusk.")
    callback = await _success_callback(db, task)
    own_list = IngestionKeys().processing(ingestion_settings.consumer_name)
    await redis.lpush(own_list, json.dumps(callback))

    completed = await wait_task(http, ingestion_api, task["task_id"])
    assert completed["status"] == "completed"
    assert await redis.llen(own_list) == 0


class FlakyGateway:
    """Answers the next requests with the given statuses, then 202."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.seen: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        await request.json()
        status = self.statuses.pop(0) if self.statuses else 202
        self.seen.append(status)
        headers = {"Retry-After": "1"} if status == 429 else {}
        body: dict[str, object] = (
            {"job_id": "j1", "status": "accepted"} if status == 202 else {"error": {}}
        )
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[FlakyGateway, str]]:
    gateway = FlakyGateway([])
    app = web.Application()
    app.router.add_post("/api/v1/embeddings/generate", gateway.handle)
    async with serving_app(app) as url:
        yield gateway, url


#: Retries without waiting long (a Retry-After is still honoured).
QUICK = RetryPolicy(max_attempts=8, base_s=0.01, max_s=10)


async def _send(client: EmbeddingClient) -> dict[str, object]:
    return await client.generate_embeddings(
        tenant_id="t", collection_id="c", document_id="d", task_id="k", model="m",
        chunks=[{"chunk_id": "a", "text": "x", "metadata": {}}],
        callback_queue="ingestion:callbacks:embedding",
    )  # fmt: skip


async def test_the_embedding_client_retries_503_and_429_honouring_retry_after(
    flaky: tuple[FlakyGateway, str], http: aiohttp.ClientSession
) -> None:
    gateway, url = flaky
    gateway.statuses = [503, 429]
    client = EmbeddingClient(http, url, "key", retry=QUICK)
    started = time.monotonic()
    accepted = await _send(client)
    assert accepted["job_id"] == "j1"
    assert gateway.seen == [503, 429, 202]
    assert time.monotonic() - started >= 0.9  # waited out the 429's Retry-After: 1


async def test_the_embedding_client_does_not_retry_a_refusal(
    flaky: tuple[FlakyGateway, str], http: aiohttp.ClientSession
) -> None:
    gateway, url = flaky
    gateway.statuses = [400]
    with pytest.raises(IngestionError) as caught:
        await _send(EmbeddingClient(http, url, "key", retry=QUICK))
    assert caught.value.code == IngestionErrorCode.EMBEDDING_FAILED
    assert gateway.seen == [400]


async def test_the_embedding_client_retries_a_refused_connection_then_gives_up(
    http: aiohttp.ClientSession,
) -> None:
    from embedpipe.redis_server import free_port

    client = EmbeddingClient(
        http, f"http://127.0.0.1:{free_port()}", "key", retry=replace(QUICK, max_attempts=3)
    )
    with pytest.raises(IngestionError) as caught:
        await asyncio.wait_for(_send(client), 10)
    assert caught.value.code == IngestionErrorCode.UNAVAILABLE
    assert "after 3 attempts" in caught.value.message
