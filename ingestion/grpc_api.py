"""The gRPC front of the ingestion API: the same core as the HTTP routes, the same rules.

The caller's API key names its tenant (embedpipe/grpc/guard.py, as the Embedding Service
does); `IngestionError`s map to statuses once, here, with the bad field as a
google.rpc.BadRequest violation. The API process serves it next to the HTTP front
(ingestion/api.py), with health, reflection and a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from embedpipe.grpc.errors import ErrorLayer, RpcError
from embedpipe.grpc.guard import GuardLayer, TenantFrom, current_tenant
from embedpipe.grpc.health import follow_readiness
from embedpipe.grpc.layers import LayeredServer
from embedpipe.grpc.tracing import tracing_layers
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from embedpipe.violations import FieldViolation
from ingestion.core import collections, documents, reembed, search, tasks
from ingestion.core.backends import Backends
from ingestion.core.checks import invalid
from ingestion.core.documents import FileBuffer
from ingestion.core.failures import as_ingestion_error
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.settings import DEFAULT_TENANT

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["IngestionService"].full_name
#: Seconds between readiness checks of the health service.
HEALTH_INTERVAL_S = 2.0
#: Room for a file part of a few MiB plus its framing; a larger file comes in more parts.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

Context = grpc.aio.ServicerContext[object, object]

STATUS_BY_CODE = {
    IngestionErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    IngestionErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    IngestionErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    IngestionErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    IngestionErrorCode.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    IngestionErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    IngestionErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    IngestionErrorCode.UNSUPPORTED_MEDIA_TYPE: grpc.StatusCode.INVALID_ARGUMENT,
    IngestionErrorCode.UNPROCESSABLE: grpc.StatusCode.INVALID_ARGUMENT,
    IngestionErrorCode.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    IngestionErrorCode.EMBEDDING_FAILED: grpc.StatusCode.INTERNAL,
    IngestionErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    IngestionErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def translate(exc: Exception) -> RpcError | None:
    error = as_ingestion_error(exc)
    if error is None:
        return None
    return RpcError(
        STATUS_BY_CODE[error.code],
        error.message,
        violations=[FieldViolation(error.field, error.message)] if error.field else (),
        retry_after_s=error.retry_after_s,
    )


class IngestionServicer(pb_grpc.IngestionServiceServicer):
    """Each method: the caller's tenant, the core, the answer."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends

    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: Context
    ) -> pb.CreateCollectionResponse:
        return await collections.create_collection(self.backends, current_tenant(), request)

    async def GetCollection(
        self, request: pb.GetCollectionRequest, context: Context
    ) -> pb.GetCollectionResponse:
        return await collections.get_collection(self.backends, current_tenant(), request)

    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: Context
    ) -> pb.ListCollectionsResponse:
        return await collections.list_collections(self.backends, current_tenant(), request)

    async def DeleteCollection(
        self, request: pb.DeleteCollectionRequest, context: Context
    ) -> pb.DeleteCollectionResponse:
        return await collections.delete_collection(self.backends, current_tenant(), request)

    async def ReembedCollection(
        self, request: pb.ReembedCollectionRequest, context: Context
    ) -> pb.ReembedCollectionResponse:
        return await reembed.reembed_collection(self.backends, current_tenant(), request)

    async def UploadDocument(
        self, request_iterator: AsyncIterator[pb.UploadDocumentRequest], context: Context
    ) -> pb.UploadDocumentResponse:
        tenant = current_tenant()
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            raise invalid("header", "the first message must be the document's header")
        header = first.header
        collection = await documents.collection_for_upload(
            self.backends, tenant, header.collection_id
        )
        limit = self.backends.settings.max_upload_bytes
        file: FileBuffer | None = None
        async for part in request_iterator:
            if not part.HasField("file"):
                raise invalid("header", "send the header once, in the first message")
            file = file or FileBuffer(limit)
            try:
                file.add(part.file)
            except IngestionError:
                await _drain(request_iterator, limit)
                raise
        return await documents.upload_document(self.backends, tenant, collection, header, file)

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: Context
    ) -> pb.ListDocumentsResponse:
        return await documents.list_documents(self.backends, current_tenant(), request)

    async def GetDocument(
        self, request: pb.GetDocumentRequest, context: Context
    ) -> pb.GetDocumentResponse:
        return await documents.get_document(self.backends, current_tenant(), request)

    async def DeleteDocument(
        self, request: pb.DeleteDocumentRequest, context: Context
    ) -> pb.DeleteDocumentResponse:
        return await documents.delete_document(self.backends, current_tenant(), request)

    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.GetTaskResponse:
        return await tasks.get_task(self.backends, current_tenant(), request)

    async def CancelTask(
        self, request: pb.CancelTaskRequest, context: Context
    ) -> pb.CancelTaskResponse:
        return await tasks.cancel_task(self.backends, current_tenant(), request)

    async def WatchTask(
        self, request: pb.WatchTaskRequest, context: Context
    ) -> AsyncIterator[pb.WatchTaskResponse]:
        async for event in tasks.watch_task(self.backends, current_tenant(), request):
            yield pb.WatchTaskResponse(event=event)

    async def Search(self, request: pb.SearchRequest, context: Context) -> pb.SearchResponse:
        return await search.search(self.backends, current_tenant(), request)


async def _drain(parts: AsyncIterator[pb.UploadDocumentRequest], limit: int) -> None:
    """Read and drop what a refused upload still sends, up to `limit` bytes more: answered
    while it is still sending, a client may see the stream reset (INTERNAL) instead of our
    status."""
    dropped = 0
    async for part in parts:
        dropped += part.ByteSize()
        if dropped > limit:
            return


@dataclass
class IngestionGrpcServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    backends: Backends
    _monitor: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        """Serve; health is SERVING while PostgreSQL and Redis answer (as /readyz)."""
        await self.server.start()
        self._monitor = asyncio.create_task(
            follow_readiness(self.health, ("", SERVICE_NAME), self._ready, HEALTH_INTERVAL_S)
        )
        log.info("ingestion grpc listening port=%d", self.port)

    async def _ready(self) -> bool:
        await self.backends.pool.fetchval("SELECT 1")
        return bool(await self.backends.redis.ping())

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls; give calls in flight `grace_s` to end."""
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


async def create_grpc_server(backends: Backends) -> IngestionGrpcServer:
    """Build (not start) the server, bound to the settings' gRPC address (port 0: any)."""
    settings = backends.settings
    guard = GuardLayer(
        SERVICE_NAME, settings.keys, backends.limiter,
        tenant_from=TenantFrom.KEY, tenant_without_keys=DEFAULT_TENANT,
    )  # fmt: skip
    raw_server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    # The error layer is outside the guard, so it also maps the guard's refusals.
    server = LayeredServer(raw_server, [*tracing_layers(), ErrorLayer(translate), guard])
    pb_grpc.add_IngestionServiceServicer_to_server(IngestionServicer(backends), server)
    health_servicer = health.aio.HealthServicer()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return IngestionGrpcServer(server, port, health_servicer, backends)
