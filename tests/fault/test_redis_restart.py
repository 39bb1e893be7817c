"""Redis stopped and started again mid-run (same port, its append-only file): services
reconnect by themselves and no accepted job is lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import redis.asyncio as aioredis

from embedding.providers.local import LocalOnnxProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import create_server
from embedding.settings import EmbeddingSettings
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.redis_server import RedisServer
from tests.support.jobs import CALLBACK_QUEUE, seed_request
from tests.support.services import running_worker, wait_serving

JOBS = 60


async def test_no_accepted_job_is_lost_across_a_redis_restart(
    settings: EmbeddingSettings,
    local_provider: LocalOnnxProvider,
    tmp_path: Path,
    figure: Callable[[str], None],
) -> None:
    redis_server = RedisServer(tmp_path / "redis", appendonly=True)
    redis_server.start()
    own = replace(settings, redis_url=redis_server.url)
    registry = ProviderRegistry({DEFAULT_MODEL: local_provider}, DEFAULT_MODEL)
    server, port = await create_server(own, registry=registry)
    await server.start()
    accepted: set[str] = set()
    refused = 0
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
            running_worker(own, registry),
        ):
            await wait_serving(channel)
            stub = pb_grpc.EmbeddingServiceStub(channel)
            for n in range(JOBS):
                if n == JOBS // 3:
                    redis_server.stop()  # SIGTERM: Redis writes its append-only file and exits
                if n == 2 * JOBS // 3:
                    redis_server.start()  # same port, same data directory
                try:
                    reply = await stub.GenerateEmbeddings(
                        seed_request(task_id=f"task-{n}"), timeout=5
                    )
                    accepted.add(f"task-{n}")
                    assert reply.job_id
                except grpc.aio.AioRpcError as exc:
                    # While Redis is down, calls are refused as retryable, never accepted.
                    assert exc.code() in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ), exc
                    refused += 1
            client = aioredis.Redis.from_url(redis_server.url)
            called_back: set[str] = set()
            try:
                async with asyncio.timeout(90):
                    while not accepted <= called_back:
                        item = await client.brpop([CALLBACK_QUEUE], timeout=1)
                        if item is not None:
                            body = json.loads(item[1])
                            assert body["status"] == "success"
                            called_back.add(body["task_id"])
            finally:
                await client.aclose()
    finally:
        await server.stop(0.5)
        redis_server.stop()
    figure(
        f"\nredis restart: jobs sent {JOBS}, accepted {len(accepted)}, refused while down "
        f"{refused}, accepted jobs lost {len(accepted - called_back)}"
    )
    assert refused > 0, "Redis was never seen down"
    assert len(accepted) >= JOBS // 2
    assert accepted <= called_back
