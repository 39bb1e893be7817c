"""Search: the query is embedded through the embedding server's `Embed`, then pgvector
finds the nearest chunks of the tenant's collection."""

from __future__ import annotations

import grpc
from aiohttp import web

from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.http.auth import tenant_of
from embedpipe.http.json_body import read_json_object
from ingestion import store
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.http import EMBEDDING, POOL, check_storable, not_found
from ingestion.upstream import CALL_TIMEOUT_S, embedding_failure, service_metadata

MAX_TOP_K = 100


async def search(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    collection_id = request.match_info["collection_id"]
    body = await read_json_object(request)
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, "must be a non-empty string", field="query"
        )
    top_k = body.get("top_k", 5)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT,
            f"must be an integer from 1 to {MAX_TOP_K}",
            field="top_k",
        )
    check_storable(query, "query")
    metadata_filter = body.get("filter")
    check_storable(metadata_filter, "filter")
    if metadata_filter is not None and not isinstance(metadata_filter, dict):
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT,
            "must be an object of metadata values to match",
            field="filter",
        )
    collection = await store.get_collection(request.app[POOL], tenant, collection_id)
    if collection is None:
        raise not_found(f"collection {collection_id!r}")
    try:
        reply = await request.app[EMBEDDING].Embed(
            pb.EmbedRequest(inputs=[query], model=collection["model"], truncate=True),
            timeout=CALL_TIMEOUT_S,
            metadata=service_metadata(request.app),
        )
    except grpc.aio.AioRpcError as exc:
        # The query is the request's one input: the server's field for it is ours.
        raise embedding_failure(exc, {"inputs[0]": "query", "inputs": "query"}) from None
    results = await store.search(
        request.app[POOL],
        tenant,
        collection_id,
        list(reply.embeddings[0].values),
        top_k=top_k,
        metadata_filter=metadata_filter,
    )
    return web.json_response({"results": results, "model": reply.model})
