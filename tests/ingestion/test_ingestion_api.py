"""The ingestion API end to end: collections, uploads, live events, search, tenancy."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg

from tests.support.ingestion_calls import COLLECTIONS, HANDBOOK, create_collection, wait_task
from tests.support.tenants import bearer


async def test_markdown_upload_is_searchable_and_events_show_every_status(
    ingestion_api: str, ingestion_worker: None, http: aiohttp.ClientSession
) -> None:
    collection = await create_collection(http, ingestion_api, "handbook")
    assert collection["dimensions"] == 384 and collection["chunk_tokens"] <= 254

    async with http.ws_connect(f"{ingestion_api}/api/v1/ws", headers=bearer("tenant-a")) as ws:
        await ws.send_json({"action": "subscribe", "all": True})
        assert (await ws.receive_json())["type"] == "subscribed"
        form = aiohttp.FormData()
        form.add_field(
            "file", HANDBOOK.encode(), filename="handbook.md", content_type="text/markdown"
        )
        form.add_field("document_id", "handbook-v1")
        async with http.post(
            f"{ingestion_api}{COLLECTIONS}/handbook/documents",
            data=form,
            headers=bearer("tenant-a"),
        ) as r:
            assert r.status == 202, await r.text()
            accepted = await r.json()
        statuses: list[str] = []
        async with asyncio.timeout(60):
            while not statuses or statuses[-1] not in ("completed", "failed"):
                event = await ws.receive_json()
                if event.get("task_id") == accepted["task_id"]:
                    statuses.append(event["status"])
    seen = list(dict.fromkeys(statuses))
    assert seen == ["pending", "extracting", "chunking", "embedding", "storing", "completed"]

    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/handbook/search",
        json={"query": "How many holidays do staff get each year?", "top_k": 3},
        headers=bearer("tenant-a"),
    ) as r:
        assert r.status == 200, await r.text()
        results = (await r.json())["results"]
    assert results[0]["document_id"] == "handbook-v1"
    assert "vacation" in results[0]["text"]
    assert "Leave" in results[0]["metadata"]["headings"]


async def test_reupload_unchanged_then_changed_then_delete(
    ingestion_api: str,
    ingestion_worker: None,
    http: aiohttp.ClientSession,
    database_url: str,
) -> None:
    await create_collection(http, ingestion_api, "notes")
    docs = f"{ingestion_api}{COLLECTIONS}/notes/documents"

    async def upload(text: str) -> dict[str, Any]:
        body = {"text": text, "document_id": "note-1", "filename": "note.md"}
        async with http.post(docs, json=body, headers=bearer("tenant-a")) as r:
            assert r.status == 202, await r.text()
            accepted: dict[str, Any] = await r.json()
        return await wait_task(http, ingestion_api, accepted["task_id"])

    first = await upload(HANDBOOK)
    assert first["status"] == "completed" and first["chunks_total"] >= 1

    async def searchable_chunks() -> int:
        async with http.get(f"{ingestion_api}{COLLECTIONS}/notes", headers=bearer("tenant-a")) as r:
            count: int = (await r.json())["chunk_count"]
        return count

    assert await searchable_chunks() == first["chunks_total"]
    again = await upload(HANDBOOK)
    assert again["status"] == "unchanged" and again["chunks_total"] == 0
    changed = await upload("# Parking\n\nVisitors park in the north garage, level two.")
    assert changed["status"] == "completed"
    assert await searchable_chunks() == changed["chunks_total"]  # the old version's are gone

    connection = await asyncpg.connect(database_url)
    try:
        texts = [
            r["text"]
            for r in await connection.fetch("SELECT text FROM chunks WHERE document_id = 'note-1'")
        ]
        assert texts and all("vacation" not in t for t in texts)
        assert any("garage" in t for t in texts)
        async with http.delete(f"{docs}/note-1", headers=bearer("tenant-a")) as r:
            assert r.status == 204
        assert await searchable_chunks() == 0
        assert await connection.fetchval("SELECT count(*) FROM chunks") == 0
        async with http.get(f"{docs}/note-1", headers=bearer("tenant-a")) as r:
            assert r.status == 404
    finally:
        await connection.close()
