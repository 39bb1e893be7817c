"""Fixtures: real services for the tests (a private redis-server and PostgreSQL, gRPC and
HTTP servers on free ports) and the figures a run reports at its end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace

import aiohttp
import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis

from embedding.providers.local import LocalOnnxProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import EmbeddingServer
from embedding.settings import (
    EmbeddingSettings,
    Limits,
    ModelSpec,
    WorkerSettings,
)
from embedding.worker import EmbeddingWorker
from embedpipe.auth import KeyStore, hash_key
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.postgres_server import PostgresServer
from embedpipe.redis_server import RedisServer
from gateway.settings import GatewaySettings
from ingestion.settings import IngestionSettings
from ingestion.worker import run_worker as run_ingestion_worker
from tests.support.services import (
    WorkerFactory,
    ingestion_settings_for,
    running_worker,
    serving_embedding,
    serving_gateway,
    serving_ingestion,
    started_server,
    wait_serving,
)
from tests.support.tenants import TENANT_KEYS

# Shared assertion helpers get the same detailed failure messages as tests.
pytest.register_assert_rewrite("tests.support.soak_checks")

_FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Report a measured figure; the run prints them all at its end, passed or not."""
    lines = request.config.stash.setdefault(_FIGURES, [])
    return lambda text: lines.append(text.strip())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_FIGURES, [])
    if lines:
        terminalreporter.write_sep("=", "measured figures")
        for text in lines:
            terminalreporter.write_line(text)


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
    async with started_server(settings, registry) as built:
        yield built


@pytest.fixture
async def channel(server: EmbeddingServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        await wait_serving(chan)
        yield chan


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.EmbeddingServiceAsyncStub:
    return pb_grpc.EmbeddingServiceStub(channel)


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


@pytest.fixture
def auth_settings(settings: EmbeddingSettings) -> EmbeddingSettings:
    """Settings with API keys on (and a rate limit loose enough not to get in the way)."""
    keys = KeyStore({hash_key(key): tenant for tenant, key in TENANT_KEYS.items()})
    return replace(settings, keys=keys, rate_limit_per_s=1000, rate_limit_burst=1000)


@pytest.fixture
async def auth_server(
    auth_settings: EmbeddingSettings, local_provider: LocalOnnxProvider, redis: aioredis.Redis
) -> AsyncIterator[EmbeddingServer]:
    async with serving_embedding(auth_settings, local_provider) as (built, _channel):
        yield built


@pytest.fixture
def gateway_settings(auth_server: EmbeddingServer) -> GatewaySettings:
    return GatewaySettings(
        port=0,
        embedding_target=f"127.0.0.1:{auth_server.port}",
        max_body_bytes=2 * 1024 * 1024,
        request_timeout_s=10,
    )


@pytest.fixture
async def gateway(gateway_settings: GatewaySettings) -> AsyncIterator[str]:
    async with serving_gateway(gateway_settings) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private PostgreSQL with pgvector; yields its URL."""
    with PostgresServer(tmp_path_factory.mktemp("pg") / "data") as server:
        yield server.url


@pytest.fixture
async def database_url(postgres: str) -> str:
    """The private PostgreSQL, emptied: every test starts from a fresh schema."""
    connection = await asyncpg.connect(postgres)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()
    return postgres


@pytest.fixture
def ingestion_settings(
    database_url: str,
    settings: EmbeddingSettings,
    auth_server: EmbeddingServer,
    gateway: str,
) -> IngestionSettings:
    return ingestion_settings_for(database_url, settings, auth_server, gateway)


@pytest.fixture
async def ingestion_api(ingestion_settings: IngestionSettings) -> AsyncIterator[str]:
    async with serving_ingestion(ingestion_settings) as url:
        yield url


@pytest.fixture
async def ingestion_worker(
    ingestion_settings: IngestionSettings, worker: EmbeddingWorker
) -> AsyncIterator[None]:
    """An in-process ingestion worker (job and callback consumers), with an embedding
    worker behind the gateway."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_ingestion_worker(ingestion_settings, stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 30)
