"""JSON that parses but cannot be carried is a 400 naming the body, never a 500."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.gateway_calls import GENERATE, seed_payload
from tests.support.ingestion_calls import COLLECTIONS, create_collection
from tests.support.tenants import bearer

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"document_id": "\\ud800", "collection_id": "c", "tenant_id": "tenant-a",'
        b' "task_id": "t", "callback_queue": "ingestion:callbacks:embedding",'
        b' "chunks": [{"chunk_id": "a", "text": "x"}]}',
        b'{"chunks": [{"chunk_id": "a", "text": "x", "metadata": {"n": 1' + b"0" * 400 + b"}}]}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"n": ' + b"9" * 5000 + b"}",
    ],
    ids=["lone surrogate", "huge integer in metadata", "deep nesting", "5000-digit number"],
)
async def test_the_gateway_answers_400_for_unrepresentable_json(
    gateway: str, http: aiohttp.ClientSession, body: bytes
) -> None:
    headers = {**bearer("tenant-a"), **JSON}
    async with http.post(gateway + GENERATE, data=body, headers=headers) as r:
        assert r.status == 400, await r.text()


async def test_openai_route_refuses_out_of_range_dimensions(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    body = {"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 2**40}
    async with http.post(gateway + "/v1/embeddings", json=body, headers=bearer("tenant-a")) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == "dimensions"


async def test_a_generate_payload_is_still_fine(gateway: str, http: aiohttp.ClientSession) -> None:
    async with http.post(gateway + GENERATE, json=seed_payload(), headers=bearer("tenant-a")) as r:
        assert r.status == 202


async def test_uploads_with_nul_or_broken_multipart_are_400(
    ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    await create_collection(http, ingestion_api, "hostile")
    url = f"{ingestion_api}{COLLECTIONS}/hostile/documents"
    body = {"text": "hello", "metadata": {"k": "a\u0000b"}}
    async with http.post(url, json=body, headers=bearer("tenant-a")) as r:
        assert r.status == 400
        assert (await r.json())["error"]["details"][0]["fieldViolations"][0]["field"] == "metadata"
    async with http.post(url, json={"text": "a\u0000b"}, headers=bearer("tenant-a")) as r:
        assert r.status == 400
    headers = {**bearer("tenant-a"), "Content-Type": "multipart/form-data"}  # no boundary
    async with http.post(url, data=b"--x\r\n", headers=headers) as r:
        assert r.status == 400, await r.text()
