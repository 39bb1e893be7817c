"""The Ingestion Service over gRPC, as a client in another language would use it: a document
streamed in parts, its task followed with WatchTask to the end, then found by Search."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from embedpipe.ingestion.v1 import resources_pb2
from embedpipe.protojson import to_json
from ingestion.settings import IngestionSettings
from tests.support.ingestion_calls import HANDBOOK, STATUSES
from tests.support.services import IngestionFronts, serving_ingestion_fronts
from tests.support.tenants import TENANT_KEYS, bearer

SERVICE = "embedpipe.ingestion.v1.IngestionService"
BUF = Path(__file__).parents[2] / "scripts/tools/node_modules/.bin/buf"


def key_of(tenant: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TENANT_KEYS[tenant]}"),)


A, B = key_of("tenant-a"), key_of("tenant-b")


@pytest.fixture
async def fronts(ingestion_settings: IngestionSettings) -> AsyncIterator[IngestionFronts]:
    async with serving_ingestion_fronts(ingestion_settings) as served:
        yield served


@pytest.fixture
async def channel(fronts: IngestionFronts) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(fronts.grpc_target) as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.IngestionServiceAsyncStub:
    return pb_grpc.IngestionServiceStub(channel)


def streamed(text: str, part_bytes: int) -> list[pb.UploadDocumentRequest]:
    header = pb.DocumentHeader(
        collection_id="handbook",
        document_id="handbook-v1",
        filename="handbook.md",
        content_type="text/markdown",
    )
    data = text.encode()
    return [pb.UploadDocumentRequest(header=header)] + [
        pb.UploadDocumentRequest(file=data[i : i + part_bytes])
        for i in range(0, len(data), part_bytes)
    ]


async def test_a_document_streamed_in_parts_is_watched_to_completed_and_found(
    fronts: IngestionFronts,
    stub: pb_grpc.IngestionServiceAsyncStub,
    ingestion_worker: None,
    http: aiohttp.ClientSession,
) -> None:
    created = await stub.CreateCollection(
        pb.CreateCollectionRequest(collection_id="handbook"), metadata=A
    )
    assert created.collection.dimensions == 384

    async with http.ws_connect(f"{fronts.url}/api/v1/ws", headers=bearer("tenant-a")) as ws:
        accepted = await stub.UploadDocument(iter(streamed(HANDBOOK, 50)), metadata=A)
        await ws.send_json({"action": "subscribe", "task_id": accepted.task_id})
        events: list[resources_pb2.TaskEvent] = []
        async with asyncio.timeout(60):
            async for reply in stub.WatchTask(
                pb.WatchTaskRequest(task_id=accepted.task_id), metadata=A
            ):
                events.append(reply.event)
            # The WebSocket tells the same story, ending in the same final event.
            socket_events: list[dict[str, object]] = []
            while not socket_events or socket_events[-1]["status"] not in ("completed", "failed"):
                message = await ws.receive_json()
                if message.get("type") == "task":
                    socket_events.append(message)

    statuses = [event.status for event in events]
    assert statuses[-1] == "completed", statuses
    assert statuses == sorted(set(statuses), key=STATUSES.index)  # in order, each once
    assert events[-1].progress == 100 and events[-1].chunks_embedded == events[-1].chunks_total
    assert {"type": "task", **to_json(events[-1])} == socket_events[-1]

    found = await stub.Search(
        pb.SearchRequest(
            collection_id="handbook", query="How many holidays do staff get each year?", top_k=3
        ),
        metadata=A,
    )
    assert found.results[0].document_id == "handbook-v1"
    assert "vacation" in found.results[0].text

    # The other tenant sees none of it: not the task, not its events, not the collection.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in stub.WatchTask(pb.WatchTaskRequest(task_id=accepted.task_id), metadata=B):
            pass
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Search(pb.SearchRequest(collection_id="handbook", query="holidays"), metadata=B)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_upload_must_start_with_its_header_and_send_it_once(
    fronts: IngestionFronts, stub: pb_grpc.IngestionServiceAsyncStub
) -> None:
    await stub.CreateCollection(pb.CreateCollectionRequest(collection_id="handbook"), metadata=A)
    parts = streamed(HANDBOOK, 100)
    for bad in (parts[1:], [*parts, parts[0]], []):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.UploadDocument(iter(bad), metadata=A)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "header" in (refused.value.details() or "")
    both = [
        pb.UploadDocumentRequest(header=pb.DocumentHeader(collection_id="handbook", text="Hi.")),
        pb.UploadDocumentRequest(file=b"more"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UploadDocument(iter(both), metadata=A)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith("send the document as text or")


async def test_health_and_reflection_describe_the_service(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    # SERVING once its readiness check (PostgreSQL and Redis answer) has passed.
    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    async with asyncio.timeout(10):
        async for answer in watch:
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                break
    watch.cancel()

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in reflection.ServerReflectionInfo(iter([request])):
        names = {service.name for service in reply.list_services_response.service}
        assert SERVICE in names


async def test_buf_curl_lists_and_calls_the_service_through_reflection(
    fronts: IngestionFronts,
) -> None:
    """What a user with no protos at hand can do: ask the server what it serves, call it."""
    address = f"http://{fronts.grpc_target}"
    base = [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
    listed = await run(*base, "--list-methods", address)
    assert f"{SERVICE}/WatchTask" in listed.splitlines()
    created = await run(
        *base, "-H", f"authorization: Bearer {TENANT_KEYS['tenant-a']}",
        "--data", '{"collection_id": "by-buf", "chunk_tokens": 64}',
        f"{address}/{SERVICE}/CreateCollection",
    )  # fmt: skip
    collection = json.loads(created)["collection"]
    assert collection["collectionId"] == "by-buf" and collection["chunkTokens"] == 64


async def run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_one_rate_limit_per_tenant_over_both_transports(
    ingestion_settings: IngestionSettings, http: aiohttp.ClientSession
) -> None:
    """A tenant's calls over HTTP and gRPC draw on one bucket: it cannot double its rate by
    using both, and both refuse the same way, saying when to retry."""
    tight = replace(ingestion_settings, rate_limit_per_s=0.2, rate_limit_burst=3)
    async with (
        serving_ingestion_fronts(tight) as served,
        grpc.aio.insecure_channel(served.grpc_target) as channel,
    ):
        stub = pb_grpc.IngestionServiceStub(channel)
        url = f"{served.url}/api/v1/collections"
        for _ in range(2):
            async with http.get(url, headers=bearer("tenant-a")) as r:
                assert r.status == 200
        await stub.ListCollections(pb.ListCollectionsRequest(), metadata=A)  # the third

        async with http.get(url, headers=bearer("tenant-a")) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
            message = (await r.json())["error"]["message"]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListCollections(pb.ListCollectionsRequest(), metadata=A)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == message
        retry_after = dict(refused.value.trailing_metadata() or ())["retry-after"]
        assert int(retry_after) >= 1

        # Another tenant has its own bucket.
        await stub.ListCollections(pb.ListCollectionsRequest(), metadata=B)
