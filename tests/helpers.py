"""Helpers shared by the tests: building seed requests, reading callbacks, child processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embedding.providers.base import EmbeddingProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import EmbeddingServer, create_server
from embedding.settings import DEFAULT_MODEL, EmbeddingSettings
from embedding.worker import EmbeddingWorker
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.redis_conn import connect

REPO = Path(__file__).resolve().parent.parent
CALLBACK_QUEUE = "ingestion:callbacks:embedding"

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "Interest rates rose sharply after the central bank meeting.",
    "Fresh basil and tomatoes make a simple summer pasta.",
    "The rocket reached orbit eleven minutes after launch.",
    "Volunteers planted three hundred trees along the river.",
    "The orchestra rehearsed the symphony late into the night.",
]


def seed_request(
    *,
    texts: list[str] | None = None,
    task_id: str = "task-1",
    document_id: str = "doc-1",
    tenant_id: str = "tenant-a",
    callback_queue: str = CALLBACK_QUEUE,
    model: str = "",
) -> pb.GenerateEmbeddingsRequest:
    """A GenerateEmbeddingsRequest shaped like the seed's example."""
    texts = SENTENCES[:3] if texts is None else texts
    request = pb.GenerateEmbeddingsRequest(
        document_id=document_id,
        collection_id="col-1",
        tenant_id=tenant_id,
        model=model,
        task_id=task_id,
        callback_queue=callback_queue,
    )
    for i, text in enumerate(texts):
        chunk = request.chunks.add(chunk_id=f"{document_id}:{i}", text=text)
        chunk.metadata.update({"position": i})
    return request


async def pop_callbacks(
    redis: aioredis.Redis, count: int, *, queue: str = CALLBACK_QUEUE, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """Wait for `count` callbacks on `queue` (oldest first) and decode them."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while len(found) < count:
            item = await redis.brpop([queue], timeout=1)
            if item is not None:
                found.append(json.loads(item[1]))
    return found


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
    server, port = await create_server(settings, registry=registry)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel)
            yield server, channel
    finally:
        await server.stop(0.5)


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_", "REDIS_"))}
    env.update(
        REDIS_URL=settings.redis_url,
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        EMBEDDING_WORKER_BLOCK_MS="100",
        EMBEDDING_CLAIM_IDLE_MS=str(settings.worker.claim_idle_ms),
    )
    env.update(extra)
    return env


def start_child(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `python <args>` with its output in `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
