"""Health reflects real readiness; SIGTERM stops the server without dropping calls."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embedding.providers.local import LocalOnnxProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import create_server
from embedding.settings import EmbeddingSettings, ModelSpec
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.redis_server import RedisServer, free_port
from tests.support.jobs import SENTENCES, seed_request
from tests.support.processes import start_child
from tests.support.services import child_env, wait_serving


async def _status(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="embedpipe.embedding.v1.EmbeddingService")
    )
    return int(reply.status)


async def test_not_serving_until_redis_answers(tmp_path: Path) -> None:
    redis_port = free_port()
    settings = EmbeddingSettings(redis_url=f"redis://127.0.0.1:{redis_port}/0", grpc_port=0)
    server, port = await create_server(settings)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.sleep(3)  # long enough to load the model
            assert await _status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.EmbeddingServiceStub(channel).GenerateEmbeddings(seed_request())
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            with RedisServer(tmp_path / "redis", port=redis_port, appendonly=False):
                await wait_serving(channel, timeout_s=15)
                assert await _status(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0.5)


async def test_a_model_not_loaded_is_not_listed_with_zero_dimensions(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Until its models are loaded the server answers ListModels UNAVAILABLE with a wait,
    not a model of 0 dimensions (the ingestion API stored that in a collection, once)."""
    missing = ModelSpec(name=DEFAULT_MODEL, provider="local", path=str(tmp_path / "nowhere"))
    settings = EmbeddingSettings(redis_url=redis_server.url, grpc_port=0)
    registry = ProviderRegistry({DEFAULT_MODEL: LocalOnnxProvider(missing)}, DEFAULT_MODEL)
    server, port = await create_server(settings, registry=registry)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.EmbeddingServiceStub(channel).ListModels(pb.ListModelsRequest())
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "still loading" in (caught.value.details() or "")
            trailing = dict(caught.value.trailing_metadata() or ())
            assert trailing.get("retry-after") == "1"
    finally:
        await server.stop(0.5)


async def test_sigterm_finishes_calls_in_flight_then_exits(
    settings: EmbeddingSettings, tmp_path: Path
) -> None:
    port = free_port()
    env = child_env(settings, EMBEDDING_GRPC_PORT=str(port), EMBEDDING_GRACE_S="20")
    process = start_child(["-m", "embedding", "serve"], env, tmp_path / "server.log")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel, timeout_s=60)
            stub = pb_grpc.EmbeddingServiceStub(channel)
            # Big enough to still be running when the signal lands, on a fast model too:
            # about 100,000 tokens, 5 s here in bf16 (128 texts took 1.6 s), within the grace.
            texts = [" ".join(SENTENCES) * 3] * 384
            request = pb.EmbedRequest(inputs=texts, truncate=True)

            async def call() -> pb.EmbedResponse:
                return await stub.Embed(request)

            in_flight = asyncio.create_task(call())
            await asyncio.sleep(0.5)
            assert not in_flight.done()
            process.send_signal(signal.SIGTERM)
            reply = await in_flight
            assert len(reply.embeddings) == len(texts)
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        process.kill()
    log = (tmp_path / "server.log").read_text()
    assert "stopping embedding server" in log and "embedding server stopped" in log
