"""Search: the query is embedded through the embedding server's `Embed`, then pgvector
finds the nearest chunks of the tenant's collection."""

from __future__ import annotations

import grpc

from embedpipe.embedding.v1 import embedding_service_pb2 as embedding_pb
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.protojson import struct_object
from ingestion import store
from ingestion.core import messages
from ingestion.core.backends import Backends
from ingestion.core.checks import check_between, check_storable, invalid, not_found
from ingestion.upstream import CALL_TIMEOUT_S, embedding_failure

DEFAULT_TOP_K = 5
MAX_TOP_K = 100


async def search(backends: Backends, tenant: str, request: pb.SearchRequest) -> pb.SearchResponse:
    if not request.query.strip():
        raise invalid("query", "must be a non-empty string")
    check_storable(request.query, "query")
    top_k = check_between(
        request.top_k if request.HasField("top_k") else DEFAULT_TOP_K, "top_k", 1, MAX_TOP_K
    )
    metadata_filter = struct_object(request.filter) if request.HasField("filter") else None
    check_storable(metadata_filter, "filter")
    collection = await store.get_collection(backends.pool, tenant, request.collection_id)
    if collection is None:
        raise not_found(f"collection {request.collection_id!r}")
    try:
        reply = await backends.embedding.Embed(
            embedding_pb.EmbedRequest(
                inputs=[request.query], model=collection["model"], truncate=True
            ),
            timeout=CALL_TIMEOUT_S,
            metadata=backends.embedding_metadata,
        )
    except grpc.aio.AioRpcError as exc:
        # The query is the request's one input: the server's field for it is ours.
        raise embedding_failure(exc, {"inputs[0]": "query", "inputs": "query"}) from None
    rows = await store.search(
        backends.pool,
        tenant,
        request.collection_id,
        list(reply.embeddings[0].values),
        top_k=top_k,
        metadata_filter=metadata_filter,
    )
    return pb.SearchResponse(
        results=[messages.search_result(row) for row in rows], model=reply.model
    )
