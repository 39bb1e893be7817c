"""Redis Cluster: with a hash tag in the key prefixes and the callback queue, every
multi-key command and script stays in one slot. A one-node cluster refuses anything else
(CROSSSLOT), so round trips on it prove it: GenerateEmbeddings → worker → callback, and a
document through the whole stack (gateway, ingestion API and worker) to search."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from embedding.providers.local import LocalOnnxProvider
from embedding.server import EmbeddingServer
from embedding.settings import EmbeddingSettings
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.redis_server import find_redis_server, free_port
from gateway.settings import GatewaySettings
from tests.support.ingestion_calls import (
    COLLECTIONS,
    background,
    ingestion_worker_run,
    search_top,
    upload_text,
    wait_task,
)
from tests.support.jobs import pop_callbacks, seed_request
from tests.support.services import (
    ingestion_settings_for,
    running_worker,
    serving_embedding,
    serving_gateway,
    serving_ingestion,
)
from tests.support.tenants import bearer

TAG = "{ep}"
QUEUE = f"ingestion:callbacks:{TAG}"


@pytest.fixture
def cluster_url(tmp_path: Path) -> Iterator[str]:
    """A one-node Redis Cluster owning every slot.

    The cluster bus gets its own free port: by default Redis puts it at port + 10000,
    which does not exist for an ephemeral port above 55535 (Redis then refuses to start).
    """
    port = free_port()
    log = tmp_path / "redis.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-port", str(free_port()),
                "--dir", str(tmp_path), "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        time.sleep(0.2)
        if process.poll() is not None:
            pytest.fail(f"redis-server (cluster mode) exited: {log.read_text()[-2000:]}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


async def _cluster_ready(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    await client.execute_command(  # type: ignore[no-untyped-call]
                        "CLUSTER", "ADDSLOTSRANGE", 0, 16383
                    )
                    break
                except Exception:  # not up yet
                    await asyncio.sleep(0.1)
            while True:
                info = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
                if b"cluster_state:ok" in info:
                    break
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def test_the_embedding_round_trip_works_on_redis_cluster_with_a_hash_tag(
    settings: EmbeddingSettings, local_provider: LocalOnnxProvider, cluster_url: str
) -> None:
    await _cluster_ready(cluster_url)
    tagged = replace(settings, redis_url=cluster_url, key_prefix=TAG)
    client = aioredis.Redis.from_url(cluster_url)
    try:
        async with serving_embedding(tagged, local_provider) as (server, channel):
            stub = pb_grpc.EmbeddingServiceStub(channel)
            first = await stub.GenerateEmbeddings(seed_request(callback_queue=QUEUE))
            again = await stub.GenerateEmbeddings(seed_request(callback_queue=QUEUE))
            assert again.deduplicated and again.job_id == first.job_id
            async with running_worker(tagged, server.registry):
                (callback,) = await pop_callbacks(client, 1, queue=QUEUE)
        assert callback["status"] == "success" and callback["job_id"] == first.job_id
        # The same keys without a shared tag are refused by the cluster: the check is real.
        with pytest.raises(Exception, match="same slot"):
            await client.eval("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2, "a", "b")
    finally:
        await client.aclose()


@pytest.fixture
async def tagged_server(
    auth_settings: EmbeddingSettings, local_provider: LocalOnnxProvider, cluster_url: str
) -> AsyncIterator[EmbeddingServer]:
    """The embedding server (API keys on) on the cluster, its keys under the hash tag."""
    await _cluster_ready(cluster_url)
    tagged = replace(auth_settings, redis_url=cluster_url, key_prefix=TAG)
    async with serving_embedding(tagged, local_provider) as (server, _channel):
        yield server


async def test_a_document_goes_through_the_whole_stack_on_redis_cluster(
    tagged_server: EmbeddingServer, database_url: str, http: aiohttp.ClientSession
) -> None:
    tagged = tagged_server.settings
    gateway_settings = GatewaySettings(
        port=0,
        embedding_target=f"127.0.0.1:{tagged_server.port}",
        request_timeout_s=10,
    )
    async with serving_gateway(gateway_settings) as gateway:
        ingestion = ingestion_settings_for(
            database_url, tagged, tagged_server, gateway,
            key_prefix=f"{TAG}:ingestion", callback_queue=QUEUE,
        )  # fmt: skip
        async with (
            running_worker(tagged, tagged_server.registry),
            serving_ingestion(ingestion) as api,
            background(ingestion_worker_run(ingestion)),
        ):
            async with http.post(
                api + COLLECTIONS, json={"collection_id": "notes"}, headers=bearer("tenant-a")
            ) as r:
                assert r.status == 201, await r.text()
            text = "# Orbits\n\nThe rocket reached orbit eleven minutes after launch."
            accepted = await upload_text(http, api, "notes", "rocket", text)
            task = await wait_task(http, api, accepted["task_id"])
            assert task["status"] == "completed", task
            assert task["chunks_embedded"] == task["chunks_total"] > 0
            (best, *_) = await search_top(http, api, "notes", "spacecraft launch")
            assert best["document_id"] == "rocket"
