"""Real services for the tests: a private redis-server, gRPC servers on port 0."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import pytest
import redis.asyncio as aioredis

from embedding.providers.local import LocalOnnxProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import EmbeddingServer, create_server
from embedding.settings import (
    DEFAULT_MODEL,
    EmbeddingSettings,
    Limits,
    ModelSpec,
    WorkerSettings,
)
from embedding.worker import EmbeddingWorker
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.redis_server import RedisServer
from tests.helpers import running_worker, wait_serving


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False) as server:
        yield server


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def local_provider() -> Iterator[LocalOnnxProvider]:
    """The bundled model, loaded once for the whole session."""
    provider = LocalOnnxProvider(ModelSpec(name=DEFAULT_MODEL, provider="local"))
    asyncio.run(provider.load())
    yield provider
    asyncio.run(provider.close())


@pytest.fixture
def settings(redis_server: RedisServer) -> EmbeddingSettings:
    return EmbeddingSettings(
        redis_url=redis_server.url,
        grpc_port=0,
        grace_s=2.0,
        limits=Limits(max_chunks=10, max_text_chars=2000),
        worker=WorkerSettings(consumer_name="test-worker", block_ms=100, claim_idle_ms=1000),
    )


@pytest.fixture
async def server(
    settings: EmbeddingSettings, local_provider: LocalOnnxProvider, redis: aioredis.Redis
) -> AsyncIterator[EmbeddingServer]:
    registry = ProviderRegistry({DEFAULT_MODEL: local_provider}, DEFAULT_MODEL)
    built, _port = await create_server(settings, registry=registry)
    await built.start()
    yield built
    await built.stop(0.5)


@pytest.fixture
async def channel(server: EmbeddingServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        await wait_serving(chan)
        yield chan


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.EmbeddingServiceAsyncStub:
    return pb_grpc.EmbeddingServiceStub(channel)


WorkerFactory = Callable[[], contextlib.AbstractAsyncContextManager[EmbeddingWorker]]


@pytest.fixture
def worker_factory(
    settings: EmbeddingSettings, local_provider: LocalOnnxProvider, redis: aioredis.Redis
) -> WorkerFactory:
    """Starts in-process workers on the shared model; each stops gracefully on exit."""

    def running() -> contextlib.AbstractAsyncContextManager[EmbeddingWorker]:
        registry = ProviderRegistry({DEFAULT_MODEL: local_provider}, DEFAULT_MODEL)
        return running_worker(settings, registry)

    return running


@pytest.fixture
async def worker(worker_factory: WorkerFactory) -> AsyncIterator[EmbeddingWorker]:
    async with worker_factory() as running:
        yield running
