"""`POST /api/v1/embeddings/generate`: the HTTP form of GenerateEmbeddings, answered 202.

The body is the JSON form of GenerateEmbeddingsRequest; the embedding server checks its
values (so the rules hold for gRPC clients too) and the gateway passes the caller's key on.
"""

from __future__ import annotations

from aiohttp import web

from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.http.proto_routes import ProtoRoute, rpc
from gateway.metrics import METRICS
from gateway.upstream import EMBEDDING, deadline_s, forwarded_identity

SERVICE = pb.DESCRIPTOR.services_by_name["EmbeddingService"]
GENERATE = rpc(SERVICE, "GenerateEmbeddings")
#: Errors of routes that read a JSON body and call the embedding server.
BODY_ERRORS = (400, 401, 413, 415, 429, 503, 504)
#: The OpenAPI parameter of the caller's time budget (gateway/openapi.py).
REQUEST_TIMEOUT = {"$ref": "#/components/parameters/RequestTimeout"}


async def generate_embeddings(
    request: web.Request, message: pb.GenerateEmbeddingsRequest
) -> pb.GenerateEmbeddingsResponse:
    """Accept an embedding job; its vectors arrive later as a callback on `callback_queue`."""
    call = request.app[EMBEDDING].GenerateEmbeddings(
        message, timeout=deadline_s(request), metadata=forwarded_identity(request)
    )
    reply: pb.GenerateEmbeddingsResponse = await request.app[METRICS].timed(GENERATE, call)
    return reply


ROUTES = (
    ProtoRoute(
        "POST", "/api/v1/embeddings/generate", GENERATE,
        generate_embeddings, status=202, tag="embeddings",
        required=(
            "document_id", "collection_id", "tenant_id", "chunks", "chunks.chunk_id",
            "chunks.text", "task_id", "callback_queue",
        ),
        errors=dict.fromkeys((*BODY_ERRORS, 403), ""),
        parameters=(REQUEST_TIMEOUT,),
    ),
)  # fmt: skip
