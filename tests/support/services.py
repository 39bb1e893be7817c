"""Our services for a test: servers and workers in process on free ports, and services as
child processes with their output in a log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embedding.providers.base import EmbeddingProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import EmbeddingServer, create_server
from embedding.settings import (
    EmbeddingSettings,
)
from embedding.worker import EmbeddingWorker
from embedpipe.auth import KeyStore, hash_key
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.redis_conn import connect
from gateway.app import create_app
from gateway.settings import GatewaySettings
from ingestion.api import GRPC_PORT as INGESTION_GRPC_PORT
from ingestion.api import create_app as create_ingestion_app
from ingestion.settings import IngestionSettings
from tests.support.processes import service_env
from tests.support.tenants import TENANT_KEYS


async def wait_serving(channel: grpc.aio.Channel, timeout_s: float = 30.0) -> None:
    """Wait until the server's health service says SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running_worker(
    settings: EmbeddingSettings, registry: ProviderRegistry
) -> AsyncIterator[EmbeddingWorker]:
    """An in-process worker on `registry`; it stops gracefully when the block ends."""
    client = connect(settings.redis_url, longest_block_s=settings.worker.block_ms / 1000)
    worker = EmbeddingWorker(settings, registry, client)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await client.aclose()


@contextlib.asynccontextmanager
async def serving_embedding(
    settings: EmbeddingSettings, model: EmbeddingProvider
) -> AsyncIterator[tuple[EmbeddingServer, grpc.aio.Channel]]:
    """An embedding server on `settings` serving `model` as the default model, once it
    says SERVING; yields it and a channel to it, and stops it on exit."""
    registry = ProviderRegistry({DEFAULT_MODEL: model}, DEFAULT_MODEL)
    async with serving_models(settings, registry) as served:
        yield served


@contextlib.asynccontextmanager
async def started_server(
    settings: EmbeddingSettings, registry: ProviderRegistry
) -> AsyncIterator[EmbeddingServer]:
    """An embedding server on `settings` serving the models of `registry`, started (not
    waited for: it may still be loading them); stopped on exit."""
    server, _port = await create_server(settings, registry=registry)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0.5)


@contextlib.asynccontextmanager
async def serving_models(
    settings: EmbeddingSettings, registry: ProviderRegistry
) -> AsyncIterator[tuple[EmbeddingServer, grpc.aio.Channel]]:
    """`started_server`, once it says SERVING; yields it and a channel to it."""
    async with (
        started_server(settings, registry) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        await wait_serving(channel)
        yield server, channel


@contextlib.asynccontextmanager
async def serving_app(app: web.Application, **runner_options: Any) -> AsyncIterator[str]:
    """Serve an aiohttp app on 127.0.0.1 and a free port; yields its base URL."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def child_env(settings: EmbeddingSettings, **extra: str) -> dict[str, str]:
    """Environment for a `python -m embedding ...` child pointed at the test's Redis."""
    defaults = {
        "REDIS_URL": settings.redis_url,
        "EMBEDDING_WORKER_BLOCK_MS": "100",
        "EMBEDDING_CLAIM_IDLE_MS": str(settings.worker.claim_idle_ms),
    }
    return service_env(**{**defaults, **extra})


@contextlib.asynccontextmanager
async def serving_gateway(settings: GatewaySettings) -> AsyncIterator[str]:
    """The gateway app on a free port; yields its base URL."""
    async with serving_app(create_app(settings)) as url:
        yield url


def ingestion_settings_for(
    database_url: str,
    settings: EmbeddingSettings,
    server: EmbeddingServer,
    gateway: str,
    **overrides: Any,
) -> IngestionSettings:
    """Ingestion settings on the test's services, with the test tenants' keys."""
    keys = KeyStore({hash_key(key): tenant for tenant, key in TENANT_KEYS.items()})
    chosen: dict[str, Any] = {
        "consumer_name": "ingestion-test",
        "request_chunks": 8,  # the test embedding server takes at most 10 chunks a request
        "claim_idle_ms": 2000,
        "grpc_port": 0,
        **overrides,
    }
    return IngestionSettings(
        database_url=database_url,
        redis_url=settings.redis_url,
        embedding_service_url=gateway,
        embedding_grpc_target=f"127.0.0.1:{server.port}",
        service_key=TENANT_KEYS["*"],
        keys=keys,
        **chosen,
    )


@dataclass(frozen=True)
class IngestionFronts:
    """One ingestion API process's two fronts: its HTTP base URL and its gRPC target."""

    url: str
    grpc_target: str


@contextlib.asynccontextmanager
async def serving_ingestion_fronts(settings: IngestionSettings) -> AsyncIterator[IngestionFronts]:
    """The ingestion API, HTTP and gRPC, each on a free port."""
    app = create_ingestion_app(replace(settings, grpc_port=0))
    async with serving_app(app) as url:
        yield IngestionFronts(url, f"127.0.0.1:{app[INGESTION_GRPC_PORT]}")


@contextlib.asynccontextmanager
async def serving_ingestion(settings: IngestionSettings) -> AsyncIterator[str]:
    """The ingestion API on a free port; yields its base URL."""
    async with serving_ingestion_fronts(settings) as fronts:
        yield fronts.url


WorkerFactory = Callable[[], contextlib.AbstractAsyncContextManager[EmbeddingWorker]]
