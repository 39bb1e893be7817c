"""Direct gRPC clients meet the same rules as HTTP clients: keys, tenants, backlog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis

from embedding.providers.local import LocalOnnxProvider
from embedding.server import EmbeddingServer
from embedding.settings import EmbeddingSettings
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from gateway.settings import GatewaySettings
from tests.support.jobs import seed_request
from tests.support.services import serving_embedding, serving_gateway, wait_serving
from tests.support.tenants import TENANT_KEYS, bearer


def key_of(tenant: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TENANT_KEYS[tenant]}"),)


@pytest.fixture
async def guarded(auth_server: EmbeddingServer) -> AsyncIterator[pb_grpc.EmbeddingServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        yield pb_grpc.EmbeddingServiceStub(channel)


async def test_every_method_needs_a_key(guarded: pb_grpc.EmbeddingServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as generate:
        await guarded.GenerateEmbeddings(seed_request())
    with pytest.raises(grpc.aio.AioRpcError) as embed:
        await guarded.Embed(pb.EmbedRequest(inputs=["x"]))
    with pytest.raises(grpc.aio.AioRpcError) as list_models:
        await guarded.ListModels(pb.ListModelsRequest())
    for caught in (generate, embed, list_models):
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_key_acts_only_for_its_own_tenant(
    guarded: pb_grpc.EmbeddingServiceAsyncStub, redis: aioredis.Redis
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await guarded.GenerateEmbeddings(
            seed_request(tenant_id="tenant-a"), metadata=key_of("tenant-b")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await redis.xlen("embedding:jobs") == 0

    reply = await guarded.GenerateEmbeddings(
        seed_request(tenant_id="tenant-b"), metadata=key_of("tenant-b")
    )
    assert reply.job_id
    models = await guarded.ListModels(
        pb.ListModelsRequest(), metadata=(("x-api-key", TENANT_KEYS["tenant-a"]),)
    )
    assert len(models.models) == 1


async def test_a_service_key_acts_for_any_tenant(
    guarded: pb_grpc.EmbeddingServiceAsyncStub,
) -> None:
    for tenant in ("tenant-a", "tenant-b"):
        reply = await guarded.GenerateEmbeddings(
            seed_request(tenant_id=tenant), metadata=key_of("*")
        )
        assert reply.job_id


async def test_health_and_reflection_stay_open(auth_server: EmbeddingServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        await wait_serving(channel, timeout_s=5)


async def test_a_full_backlog_refuses_new_jobs_with_retry_after(
    auth_settings: EmbeddingSettings,
    local_provider: LocalOnnxProvider,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    small = replace(auth_settings, max_backlog=2)
    async with serving_embedding(small, local_provider) as (server, channel):
        stub = pb_grpc.EmbeddingServiceStub(channel)
        for n in range(2):
            await stub.GenerateEmbeddings(
                seed_request(task_id=f"t{n}"), metadata=key_of("tenant-a")
            )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GenerateEmbeddings(seed_request(task_id="t9"), metadata=key_of("tenant-a"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "retry later" in (caught.value.details() or "")
        # A retry of an already accepted request still finds its job.
        again = await stub.GenerateEmbeddings(
            seed_request(task_id="t0"), metadata=key_of("tenant-a")
        )
        assert again.deduplicated
        # Calls at once, accepted together: the bound holds for each of them.
        many = await asyncio.gather(
            *(
                stub.GenerateEmbeddings(seed_request(task_id=task), metadata=key_of("tenant-a"))
                for task in ("t0", "t1", "t11", "t12")
            ),
            return_exceptions=True,
        )
        assert [r.deduplicated for r in many[:2] if not isinstance(r, BaseException)] == [True] * 2
        assert all(
            isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.UNAVAILABLE
            for r in many[2:]
        )
        gateway = GatewaySettings(embedding_target=f"127.0.0.1:{server.port}")
        async with serving_gateway(gateway) as url:
            payload = {
                "document_id": "d", "collection_id": "c", "tenant_id": "tenant-a", "task_id": "t10",
                "callback_queue": "ingestion:callbacks:embedding",
                "chunks": [{"chunk_id": "a", "text": "some text"}],
            }  # fmt: skip
            async with http.post(
                url + "/api/v1/embeddings/generate", json=payload, headers=bearer("tenant-a")
            ) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "5"
        assert await redis.xlen("embedding:jobs") == 2
