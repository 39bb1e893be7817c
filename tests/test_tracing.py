"""One trace for one uploaded document, across every process and both queues: the stack
exports its spans over OTLP/HTTP to a receiver the test runs, and the spans of the ingestion
API, the ingestion worker, the gateway, the embedding server and the embedding worker form
one tree under the client's own span."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from embedpipe.redis_server import free_port
from embedpipe.task_status import TaskStatus
from tests.support.stack import RunningStack, clean_env, running_stack

SERVICES = {
    "embedpipe-ingestion-api", "embedpipe-ingestion-worker", "embedpipe-gateway",
    "embedpipe-embedding-server", "embedpipe-embedding-worker",
}  # fmt: skip
GENERATE = "embedpipe.embedding.v1.EmbeddingService/GenerateEmbeddings"
#: The spans of the last hops (ended last, exported last).
EXPECTED = {"embed job", "model batch", "store callback", "store embeddings", "complete task"}
SERVER, CLIENT, CONSUMER = (
    trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT,
    trace_pb2.Span.SPAN_KIND_CONSUMER,
)  # fmt: skip


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str


class OtlpReceiver:
    """An OTLP/HTTP trace endpoint: decodes each export request and keeps its spans."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []

    async def export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = trace_service_pb2.ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in message.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans += [
                    ReceivedSpan(
                        attributes["service.name"],
                        s.name,
                        s.kind,
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                    )
                    for s in scope.spans
                ]
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[OtlpReceiver, str]]:
    otlp = OtlpReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", otlp.export)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield otlp, f"http://127.0.0.1:{port}/v1/traces"
    await runner.cleanup()


@pytest.fixture
async def stack(tmp_path: Path, receiver: tuple[OtlpReceiver, str]) -> AsyncIterator[RunningStack]:
    env = clean_env(
        tmp_path / "data",
        EMBEDPIPE_METRICS_PORT="0",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver[1],
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    async with running_stack(env) as running:
        yield running


async def upload_traced(stack: RunningStack, traceparent: str) -> None:
    """Upload one document with the client's own trace context; wait until it completes."""
    api = stack.ingestion_url + "/api/v1"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.key}"}) as http:
        async with http.post(f"{api}/collections", json={"collection_id": "logbook"}) as r:
            assert r.status == 201, await r.text()
        body = {"document_id": "entry-1", "text": "The lighthouse lamp was cleaned at dawn."}
        async with http.post(
            f"{api}/collections/logbook/documents", json=body, headers={"traceparent": traceparent}
        ) as r:
            assert r.status == 202, await r.text()
            task_id = (await r.json())["task_id"]
        async with asyncio.timeout(60):
            while True:
                async with http.get(f"{api}/tasks/{task_id}") as r:
                    status = TaskStatus((await r.json())["status"])
                if status.final:
                    break
                await asyncio.sleep(0.2)
    assert status == TaskStatus.COMPLETED


async def test_one_document_is_one_trace_across_every_process(
    stack: RunningStack, receiver: tuple[OtlpReceiver, str]
) -> None:
    otlp, _ = receiver
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    await upload_traced(stack, f"00-{trace_id}-{client_span}-01")
    async with asyncio.timeout(30):  # spans are exported in batches, 200 ms apart
        while True:
            received = otlp.of_trace(trace_id)
            names = {s.name for s in received}
            if {s.service for s in received} == SERVICES and EXPECTED.issubset(names):
                break
            await asyncio.sleep(0.2)
    spans = otlp.of_trace(trace_id)
    assert {s.service for s in spans} == SERVICES
    by_id = {s.span_id: s for s in spans}

    def one(service: str, name: str, kind: int | None = None) -> ReceivedSpan:
        (found,) = [
            s for s in spans if (s.service, s.name) == (service, name) and kind in (None, s.kind)
        ]
        return found

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        return by_id[span.parent_id]

    upload = one("embedpipe-ingestion-api", "POST /api/v1/collections/{collection_id}/documents")
    assert upload.kind == SERVER and upload.parent_id == client_span
    assert parent(one("embedpipe-ingestion-api", "extract")) == upload
    ingest = one("embedpipe-ingestion-worker", "ingest document")
    assert ingest.kind == CONSUMER and parent(ingest) == upload
    assert parent(one("embedpipe-ingestion-worker", "chunk")) == ingest
    request = one("embedpipe-ingestion-worker", "POST /api/v1/embeddings/generate", CLIENT)
    assert parent(request) == ingest
    gateway = one("embedpipe-gateway", "POST /api/v1/embeddings/generate", SERVER)
    assert parent(gateway) == request
    upstream = one("embedpipe-gateway", GENERATE, CLIENT)
    assert parent(upstream) == gateway
    accept = one("embedpipe-embedding-server", GENERATE, SERVER)
    assert parent(accept) == upstream
    job = one("embedpipe-embedding-worker", "embed job")
    assert job.kind == CONSUMER and parent(job) == accept
    assert parent(one("embedpipe-embedding-worker", "model batch")) == job
    callback = one("embedpipe-ingestion-worker", "store callback")
    assert callback.kind == CONSUMER and parent(callback) == job
    assert parent(one("embedpipe-ingestion-worker", "store embeddings")) == callback
    assert parent(one("embedpipe-ingestion-worker", "complete task")) == callback
    # Every span of the trace hangs from another of it, but the client's first.
    assert all(s.parent_id in by_id for s in spans if s is not upload)
