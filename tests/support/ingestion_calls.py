"""Calls on the ingestion API as the tests make them: collections, uploads, tasks, search,
and the in-process ingestion worker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import asyncpg

from embedpipe.task_status import TaskStatus
from ingestion.settings import IngestionSettings
from ingestion.worker import run_worker
from tests.support.tenants import bearer

COLLECTIONS = "/api/v1/collections"


HANDBOOK = """# Employee handbook

## Leave

Every employee accrues twenty-five days of paid vacation per year. Unused vacation days
can be carried over into the first quarter of the next year.

## Equipment

The company provides a laptop and a monitor. Broken equipment is replaced within a week.
"""


async def create_collection(
    http: aiohttp.ClientSession, url: str, collection_id: str, tenant: str = "tenant-a"
) -> dict[str, Any]:
    async with http.post(
        url + COLLECTIONS, json={"collection_id": collection_id}, headers=bearer(tenant)
    ) as r:
        assert r.status == 201, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def wait_task(
    http: aiohttp.ClientSession, url: str, task_id: str, tenant: str = "tenant-a"
) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            async with http.get(f"{url}/api/v1/tasks/{task_id}", headers=bearer(tenant)) as r:
                task: dict[str, Any] = await r.json()
            if TaskStatus(task["status"]).final:
                return task
            await asyncio.sleep(0.1)


TIMEOUT_S = 60


STATUSES = ["pending", "extracting", "chunking", "embedding", "storing", "completed"]


DIMENSIONS = 384


AQUARIUM_MD = b"""# Aquarium care

Replace a quarter of the water in the fish tank every week, and test the ammonia level so
the fish stay healthy.
"""


async def upload(
    http: aiohttp.ClientSession,
    url: str,
    collection_id: str,
    document_id: str,
    filename: str,
    content_type: str,
    data: bytes,
    tenant: str = "tenant-a",
) -> dict[str, Any]:
    """A multipart upload; returns the 202 body (task_id, ...)."""
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    form.add_field("document_id", document_id)
    async with http.post(
        f"{url}{COLLECTIONS}/{collection_id}/documents", data=form, headers=bearer(tenant)
    ) as r:
        assert r.status == 202, await r.text()
        accepted: dict[str, Any] = await r.json()
    return accepted


async def upload_text(
    http: aiohttp.ClientSession,
    url: str,
    collection_id: str,
    document_id: str,
    text: str,
    tenant: str = "tenant-a",
) -> dict[str, Any]:
    return await upload(
        http, url, collection_id, document_id, f"{document_id}.md", "text/markdown",
        text.encode(), tenant,
    )  # fmt: skip


async def search_top(
    http: aiohttp.ClientSession, url: str, collection_id: str, query: str
) -> list[dict[str, Any]]:
    async with http.post(
        f"{url}{COLLECTIONS}/{collection_id}/search",
        json={"query": query, "top_k": 4},
        headers=bearer("tenant-a"),
    ) as r:
        assert r.status == 200, await r.text()
        results: list[dict[str, Any]] = (await r.json())["results"]
    return results


async def wait_status(
    http: aiohttp.ClientSession, url: str, task_id: str, status: str
) -> dict[str, Any]:
    """Poll the task until it reaches `status` (fails if it ends in another)."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            async with http.get(f"{url}/api/v1/tasks/{task_id}", headers=bearer("tenant-a")) as r:
                task: dict[str, Any] = await r.json()
            if task["status"] == status:
                return task
            assert not TaskStatus(task["status"]).final, task
            await asyncio.sleep(0.05)


async def wait_until(predicate: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def background(
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
) -> AsyncIterator[None]:
    """Run `run(stop)` as a task; on exit stop it and wait for it (its errors surface)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def ingestion_worker_run(
    settings: IngestionSettings,
) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    async def run(stop: asyncio.Event) -> None:
        await run_worker(settings, stop)

    return run


async def staged_chunk_ids(db: asyncpg.Connection, task_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT chunk_id FROM chunks WHERE tenant_id = 'tenant-a' AND task_id = $1"
        " ORDER BY position",
        task_id,
    )
    return [r["chunk_id"] for r in rows]


async def embedding_task(
    http: aiohttp.ClientSession, url: str, collection_id: str, text: str
) -> dict[str, Any]:
    """Upload `text` as a new document and wait until its task waits for its vectors."""
    await create_collection(http, url, collection_id)
    accepted = await upload_text(http, url, collection_id, "doc-1", text)
    return await wait_status(http, url, accepted["task_id"], "embedding")


def seed_callback(task: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    """A callback shaped like the embedding worker's (see embedding/callbacks.py)."""
    return {
        "task_id": task["task_id"],
        "document_id": task["document_id"],
        "collection_id": task["collection_id"],
        "tenant_id": "tenant-a",
        "status": status,
        "job_id": uuid.uuid4().hex,
        "model": "all-MiniLM-L6-v2",
        **fields,
    }
