"""The gateway over real servers: seed-shaped POSTs, every error status, tenants and keys."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from embedding.providers.local import LocalOnnxProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import create_server
from embedding.settings import EmbeddingSettings
from embedding.worker import EmbeddingWorker
from embedpipe.bundled_model import DEFAULT_MODEL
from gateway.settings import GatewaySettings
from tests.support.gateway_calls import GENERATE, fields_named, seed_payload
from tests.support.jobs import SENTENCES, pop_callbacks
from tests.support.services import serving_gateway
from tests.support.tenants import bearer


def big_json(payload: dict[str, Any]) -> io.BytesIO:
    """A large JSON body as a stream (aiohttp warns about large raw-bytes bodies)."""
    return io.BytesIO(json.dumps(payload).encode())


JSON_AS_A = {"Content-Type": "application/json", "Authorization": "Bearer key-of-tenant-a"}


async def test_a_seed_post_is_accepted_and_called_back(
    gateway: str, http: aiohttp.ClientSession, worker: EmbeddingWorker, redis: aioredis.Redis
) -> None:
    async with http.post(gateway + GENERATE, json=seed_payload(), headers=bearer("tenant-a")) as r:
        assert r.status == 202
        body = await r.json()
    assert body["status"] == "accepted" and body["task_id"] == "task-1"
    assert body["job_id"] and body["chunk_count"] == 3 and body["accepted_at"].endswith("Z")

    (callback,) = await pop_callbacks(redis, 1)
    assert callback["status"] == "success" and callback["job_id"] == body["job_id"]
    assert [e["chunk_id"] for e in callback["embeddings"]] == ["doc-1:0", "doc-1:1", "doc-1:2"]
    assert {"task_id", "document_id", "collection_id", "tenant_id"} <= set(callback)


async def test_x_api_key_works_too(gateway: str, http: aiohttp.ClientSession) -> None:
    headers = {"X-API-Key": "key-of-tenant-a"}
    async with http.post(gateway + GENERATE, json=seed_payload(), headers=headers) as r:
        assert r.status == 202


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"chunks": []}, ["chunks"]),
        ({"tenant_id": 7}, ["tenant_id"]),
        ({"chunks": "text"}, ["chunks"]),
        ({"chunks": [{"chunk_id": 1, "text": 2}]}, ["chunks[0].chunk_id", "chunks[0].text"]),
        ({"chunks": [{"chunk_id": "a", "text": "t", "metadata": [1]}]}, ["chunks[0].metadata"]),
        ({"document_id": None, "task_id": None}, ["document_id", "task_id"]),
        ({"callback_queue": "embedding:jobs"}, ["callback_queue"]),
        ({"model": "text-embedding-ada-002"}, ["model"]),
    ],
    ids=[
        "no chunks",
        "mistyped tenant",
        "chunks not a list",
        "mistyped chunk fields",
        "metadata not an object",
        "missing ids",
        "queue not allowed",
        "unknown model",
    ],
)
async def test_bad_fields_give_400_naming_each_one(
    gateway: str, http: aiohttp.ClientSession, payload: dict[str, Any], fields: list[str]
) -> None:
    async with http.post(
        gateway + GENERATE, json=seed_payload(**payload), headers=bearer("tenant-a")
    ) as r:
        assert r.status == 400
        body = await r.json()
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert fields_named(body) == fields
    for field in fields:
        assert field in body["error"]["message"]


async def test_broken_json_is_400(gateway: str, http: aiohttp.ClientSession) -> None:
    headers = {**bearer("tenant-a"), "Content-Type": "application/json"}
    async with http.post(gateway + GENERATE, data=b'{"document_id": ', headers=headers) as r:
        assert r.status == 400
        assert fields_named(await r.json()) == ["body"]
    async with http.post(gateway + GENERATE, json=[1, 2], headers=bearer("tenant-a")) as r:
        assert r.status == 400


async def test_wrong_content_type_is_415(gateway: str, http: aiohttp.ClientSession) -> None:
    headers = {**bearer("tenant-a"), "Content-Type": "text/plain"}
    async with http.post(gateway + GENERATE, data=b"hello", headers=headers) as r:
        assert r.status == 415
        assert "application/json" in (await r.json())["error"]["message"]


async def test_a_body_over_the_limit_is_413(gateway: str, http: aiohttp.ClientSession) -> None:
    big = seed_payload(chunks=[{"chunk_id": "x", "text": "y" * (3 * 1024 * 1024)}])
    async with http.post(gateway + GENERATE, data=big_json(big), headers=JSON_AS_A) as r:
        assert r.status == 413
        assert (await r.json())["error"]["status"] == "PAYLOAD_TOO_LARGE"


async def test_a_body_over_aiohttps_default_1mb_is_accepted(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    # 8 chunks with 150 kB of metadata each: 1.2 MB, under the test's 2 MB setting.
    chunks = [
        {"chunk_id": f"c{i}", "text": SENTENCES[i % 6], "metadata": {"blob": "m" * 150_000}}
        for i in range(8)
    ]
    body = big_json(seed_payload(chunks=chunks))
    async with http.post(gateway + GENERATE, data=body, headers=JSON_AS_A) as r:
        assert r.status == 202


async def test_no_key_is_401_and_a_wrong_key_too(gateway: str, http: aiohttp.ClientSession) -> None:
    async with http.post(gateway + GENERATE, json=seed_payload()) as r:
        assert r.status == 401
        assert "API key" in (await r.json())["error"]["message"]
    headers = {"Authorization": "Bearer not-a-key"}
    async with http.post(gateway + GENERATE, json=seed_payload(), headers=headers) as r:
        assert r.status == 401


async def test_another_tenants_payload_is_403(
    gateway: str, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    async with http.post(
        gateway + GENERATE, json=seed_payload(tenant_id="tenant-a"), headers=bearer("tenant-b")
    ) as r:
        assert r.status == 403
        body = await r.json()
    assert (
        body["error"]["status"] == "PERMISSION_DENIED" and "tenant_id" in body["error"]["message"]
    )
    assert await redis.xlen("embedding:jobs") == 0


async def test_over_the_rate_limit_is_429_with_retry_after(
    auth_settings: EmbeddingSettings,
    local_provider: LocalOnnxProvider,
    http: aiohttp.ClientSession,
) -> None:
    tight = replace(auth_settings, rate_limit_per_s=0.5, rate_limit_burst=3)
    registry = ProviderRegistry({DEFAULT_MODEL: local_provider}, DEFAULT_MODEL)
    server, port = await create_server(tight, registry=registry)
    await server.start()
    settings = GatewaySettings(embedding_target=f"127.0.0.1:{port}", port=0)
    try:
        async with serving_gateway(settings) as url:
            statuses = []
            for n in range(4):
                payload = seed_payload(task_id=f"t{n}")
                async with http.post(url + GENERATE, json=payload, headers=bearer("tenant-a")) as r:
                    statuses.append(r.status)
                    last = r
                    body = await r.json()
            assert statuses == [202, 202, 202, 429]
            assert int(last.headers["Retry-After"]) >= 1
            assert body["error"]["status"] == "RESOURCE_EXHAUSTED"
            assert "rate limit" in body["error"]["message"]
            # Other tenants have buckets of their own.
            payload = seed_payload(tenant_id="tenant-b")
            async with http.post(url + GENERATE, json=payload, headers=bearer("tenant-b")) as r:
                assert r.status == 202
    finally:
        await server.stop(0.5)


async def test_embedding_server_down_is_503_with_retry_after(
    gateway_settings: GatewaySettings, http: aiohttp.ClientSession
) -> None:
    from embedpipe.redis_server import free_port

    nowhere = GatewaySettings(embedding_target=f"127.0.0.1:{free_port()}")
    async with serving_gateway(nowhere) as url:
        async with http.post(url + GENERATE, json=seed_payload(), headers=bearer("tenant-a")) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
            assert (await r.json())["error"]["status"] == "UNAVAILABLE"
        async with http.get(url + "/readyz") as r:
            assert r.status == 503
            assert (await r.json())["checks"]["embedding"] != "ok"
        async with http.get(url + "/healthz") as r:
            assert r.status == 200


async def test_a_spent_time_budget_is_504(gateway: str, http: aiohttp.ClientSession) -> None:
    headers = {**bearer("tenant-a"), "X-Request-Timeout": "0.05"}
    # About a second of model time (valid input): far beyond the 50 ms budget.
    slow = {"model": "all-MiniLM-L6-v2", "input": [" ".join(SENTENCES)] * 96}
    async with http.post(gateway + "/v1/embeddings", json=slow, headers=headers) as r:
        assert r.status == 504
        assert (await r.json())["error"]["code"] == "deadline_exceeded"
    headers["X-Request-Timeout"] = "soon"
    async with http.post(gateway + GENERATE, json=seed_payload(), headers=headers) as r:
        assert r.status == 400
        assert fields_named(await r.json()) == ["X-Request-Timeout"]


async def test_ready_when_the_embedding_server_serves(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway + "/readyz") as r:
        assert r.status == 200
        assert await r.json() == {"status": "ready", "checks": {"embedding": "ok"}}


async def test_unknown_routes_and_methods_answer_json(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway + "/api/v1/nothing") as r:
        assert r.status == 404
        assert (await r.json())["error"]["status"] == "NOT_FOUND"
    async with http.get(gateway + GENERATE) as r:
        assert r.status == 405
