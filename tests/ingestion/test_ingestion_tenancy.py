"""Tenants, replicas and refusals of the ingestion API, everything real.

One tenant never sees, lists, searches, deletes or hears about another's data; task events
reach a WebSocket on any API replica; and bad requests get their documented statuses.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from ingestion.settings import IngestionSettings
from tests.support.documents import PNG_BYTES, binary_bytes
from tests.support.ingestion_calls import (
    AQUARIUM_MD,
    COLLECTIONS,
    STATUSES,
    TIMEOUT_S,
    create_collection,
    upload,
    upload_text,
    wait_task,
)
from tests.support.services import serving_ingestion
from tests.support.tenants import bearer

A, B = "tenant-a", "tenant-b"


async def completed_upload(
    http: aiohttp.ClientSession, url: str, collection_id: str, tenant: str = A
) -> dict[str, Any]:
    """A collection of `tenant` with one searchable document; returns its finished task."""
    await create_collection(http, url, collection_id, tenant)
    accepted = await upload(
        http, url, collection_id, "aquarium", "a.md", "text/markdown", AQUARIUM_MD, tenant
    )
    task = await wait_task(http, url, accepted["task_id"], tenant)
    assert task["status"] == "completed"
    return task


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, tenant: str, **kwargs: Any
) -> int:
    async with http.request(method, url, headers=bearer(tenant), **kwargs) as r:
        return r.status


async def collect_statuses(ws: aiohttp.ClientWebSocketResponse, task_id: str) -> list[str]:
    """The statuses of `task_id`'s events until it finishes; fails on any other task's."""
    statuses: list[str] = []
    async with asyncio.timeout(TIMEOUT_S):
        while not statuses or statuses[-1] not in ("completed", "unchanged", "failed"):
            event = await ws.receive_json()
            assert event["type"] == "task" and event["task_id"] == task_id, event
            statuses.append(event["status"])
    return list(dict.fromkeys(statuses))


def field_of(error: dict[str, Any]) -> list[str]:
    """The fields a JSON error names."""
    return [v["field"] for detail in error["error"]["details"] for v in detail["fieldViolations"]]


# 7. Tenancy ---------------------------------------------------------------------------------


async def test_second_tenant_cannot_see_list_search_or_delete_first_tenants_data(
    ingestion_api: str, ingestion_worker: None, http: aiohttp.ClientSession
) -> None:
    task = await completed_upload(http, ingestion_api, "private")
    collection = f"{ingestion_api}{COLLECTIONS}/private"
    document = f"{collection}/documents/aquarium"
    task_url = f"{ingestion_api}/api/v1/tasks/{task['task_id']}"

    assert await status_of(http, "GET", collection, B) == 404
    assert await status_of(http, "GET", document, B) == 404
    assert await status_of(http, "GET", task_url, B) == 404
    assert await status_of(http, "GET", f"{collection}/documents", B) == 404
    async with http.get(f"{ingestion_api}{COLLECTIONS}", headers=bearer(B)) as r:
        assert (await r.json())["collections"] == []
    query = {"query": "fish tank water"}
    assert await status_of(http, "POST", f"{collection}/search", B, json=query) == 404
    upload_404 = await status_of(
        http, "POST", f"{collection}/documents", B, json={"text": "intruder"}
    )
    assert upload_404 == 404
    assert await status_of(http, "DELETE", document, B) == 404
    assert await status_of(http, "DELETE", collection, B) == 404

    # Nothing of tenant-a's was touched.
    assert await status_of(http, "GET", document, A) == 200
    async with http.post(f"{collection}/search", json=query, headers=bearer(A)) as r:
        assert [h["document_id"] for h in (await r.json())["results"]] == ["aquarium"]
    async with http.get(f"{collection}/documents", headers=bearer(A)) as r:
        assert len((await r.json())["documents"]) == 1


async def test_same_collection_id_in_two_tenants_searches_only_its_own_chunks(
    ingestion_api: str, ingestion_worker: None, http: aiohttp.ClientSession
) -> None:
    await completed_upload(http, ingestion_api, "shared-name", A)
    await create_collection(http, ingestion_api, "shared-name", B)
    accepted = await upload_text(
        http, ingestion_api, "shared-name", "b-note",
        "Tenant b's note: fish tanks need their water changed.", B,
    )  # fmt: skip
    assert (await wait_task(http, ingestion_api, accepted["task_id"], B))["status"] == "completed"

    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/shared-name/search",
        json={"query": "fish tank water", "top_k": 10},
        headers=bearer(B),
    ) as r:
        results = (await r.json())["results"]
    assert [h["document_id"] for h in results] == ["b-note"]


async def test_second_tenant_cannot_subscribe_to_or_hear_first_tenants_tasks(
    ingestion_api: str, ingestion_worker: None, http: aiohttp.ClientSession
) -> None:
    first = await completed_upload(http, ingestion_api, "private")
    await create_collection(http, ingestion_api, "own", B)
    async with http.ws_connect(f"{ingestion_api}/api/v1/ws", headers=bearer(B)) as ws:
        await ws.send_json({"action": "subscribe", "task_id": first["task_id"]})
        refused = await ws.receive_json(timeout=TIMEOUT_S)
        assert refused["type"] == "error" and refused["status"] == 404
        assert refused["task_id"] == first["task_id"]
        await ws.send_json({"action": "subscribe", "all": True})
        assert await ws.receive_json(timeout=TIMEOUT_S) == {"type": "subscribed", "all": True}

        # tenant-a works on its task's document again, then tenant-b uploads: tenant-a's
        # events are published first, so any that leaked would arrive before tenant-b's.
        again = await upload(
            http, ingestion_api, "private", "aquarium", "a.md", "text/markdown",
            AQUARIUM_MD + b"\nA changed line.\n",
        )  # fmt: skip
        assert (await wait_task(http, ingestion_api, again["task_id"]))["status"] == "completed"
        own = await upload_text(http, ingestion_api, "own", "b-doc", "Tenant b's own text.", B)
        assert await collect_statuses(ws, own["task_id"]) == STATUSES


# 8. Replicas ---------------------------------------------------------------------------------


async def test_websocket_on_one_replica_gets_events_of_an_upload_through_another(
    ingestion_api: str,
    ingestion_worker: None,
    ingestion_settings: IngestionSettings,
    http: aiohttp.ClientSession,
) -> None:
    await create_collection(http, ingestion_api, "replicated")
    async with (
        serving_ingestion(ingestion_settings) as replica_b,
        http.ws_connect(f"{replica_b}/api/v1/ws", headers=bearer(A)) as ws,
    ):
        await ws.send_json({"action": "subscribe", "all": True})
        assert await ws.receive_json(timeout=TIMEOUT_S) == {"type": "subscribed", "all": True}
        accepted = await upload(
            http, ingestion_api, "replicated", "aquarium", "a.md", "text/markdown", AQUARIUM_MD
        )
        assert await collect_statuses(ws, accepted["task_id"]) == STATUSES


# 9. Error statuses -------------------------------------------------------------------------


async def test_requests_without_a_valid_key_are_401(
    ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    collections = f"{ingestion_api}{COLLECTIONS}"
    async with http.get(collections) as r:
        assert r.status == 401
        assert (await r.json())["error"]["status"] == "UNAUTHENTICATED"
    async with http.get(collections, headers={"Authorization": "Bearer not-a-key"}) as r:
        assert r.status == 401
    async with http.post(collections, json={"collection_id": "c"}) as r:
        assert r.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{ingestion_api}/api/v1/ws")
    assert refused.value.status == 401


async def test_upload_to_an_unknown_collection_is_404(
    ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/nowhere/documents",
        json={"text": "some text"},
        headers=bearer(A),
    ) as r:
        assert r.status == 404
        assert (await r.json())["error"]["status"] == "NOT_FOUND"


async def post_file(
    http: aiohttp.ClientSession, url: str, filename: str, content_type: str, data: bytes
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    async with http.post(url, data=form, headers=bearer(A)) as r:
        body: dict[str, Any] = await r.json()
        return r.status, body


async def test_unsupported_type_is_415_and_binary_named_txt_is_422(
    ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    await create_collection(http, ingestion_api, "files")
    documents = f"{ingestion_api}{COLLECTIONS}/files/documents"

    status, body = await post_file(http, documents, "picture.png", "image/png", PNG_BYTES)
    assert status == 415, body
    assert field_of(body) == ["file"]
    status, body = await post_file(http, documents, "notes.txt", "text/plain", binary_bytes())
    assert status == 422, body
    assert field_of(body) == ["file"]
    async with http.get(documents, headers=bearer(A)) as r:
        assert (await r.json())["documents"] == []  # neither was accepted


async def test_upload_over_the_size_limit_is_413(
    ingestion_settings: IngestionSettings, http: aiohttp.ClientSession
) -> None:
    small = replace(ingestion_settings, max_upload_bytes=1024)
    async with serving_ingestion(small) as url:
        await create_collection(http, url, "small")
        documents = f"{url}{COLLECTIONS}/small/documents"

        status, body = await post_file(http, documents, "a.txt", "text/plain", b"word " * 300)
        assert status == 413, body
        assert body["error"]["status"] == "PAYLOAD_TOO_LARGE"
        async with http.post(documents, json={"text": "word " * 300}, headers=bearer(A)) as r:
            assert r.status == 413
        status, body = await post_file(http, documents, "a.txt", "text/plain", b"x" * 200_000)
        assert status == 413, body
        # Just under the limit is accepted.
        status, body = await post_file(http, documents, "a.txt", "text/plain", b"word " * 200)
        assert status == 202, body


async def test_bad_json_fields_are_400_naming_the_field(
    ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    collections = f"{ingestion_api}{COLLECTIONS}"

    async def bad(url: str, body: object) -> list[str]:
        async with http.post(url, json=body, headers=bearer(A)) as r:
            assert r.status == 400, await r.text()
            error: dict[str, Any] = await r.json()
        assert error["error"]["status"] == "INVALID_ARGUMENT"
        return field_of(error)

    assert await bad(collections, {"collection_id": "no spaces allowed"}) == ["collection_id"]
    assert await bad(collections, {"collection_id": ""}) == ["collection_id"]
    assert await bad(collections, {"collection_id": "c", "chunk_tokens": 0}) == ["chunk_tokens"]
    assert await bad(collections, {"collection_id": "c", "model": "no-such-model"}) == ["model"]
    assert await bad(collections, ["not", "an", "object"]) == ["body"]
    await create_collection(http, ingestion_api, "c")
    search = f"{collections}/c/search"
    assert await bad(search, {"query": "q", "top_k": 0}) == ["top_k"]
    assert await bad(search, {"query": "q", "top_k": True}) == ["top_k"]
    assert await bad(search, {"query": "  "}) == ["query"]
    assert await bad(search, {"query": "q", "filter": [1]}) == ["filter"]
    documents = f"{collections}/c/documents"
    assert await bad(documents, {"text": 5}) == ["text"]
    assert await bad(documents, {"text": "t", "document_id": "a/b"}) == ["document_id"]
