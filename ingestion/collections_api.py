"""Collections: create (with model and chunking settings), list, get, delete."""

from __future__ import annotations

import re
from typing import Any

import grpc
from aiohttp import web

from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.http.auth import tenant_of
from embedpipe.http.json_body import read_json_object
from ingestion import store
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.http import EMBEDDING, POOL, SETTINGS, check_storable, not_found
from ingestion.upstream import CALL_TIMEOUT_S, embedding_failure, service_metadata

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def check_id(value: object, field: str) -> str:
    """An id usable in URLs and keys: 1-128 of letters, digits and `_ . : -`."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT,
            "must be 1-128 characters: letters, digits, '_', '.', ':' or '-'",
            field=field,
        )
    return value


def _int(body: dict[str, Any], name: str, default: int, minimum: int, maximum: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT,
            f"must be an integer from {minimum} to {maximum}",
            field=name,
        )
    return value


async def _model_info(request: web.Request, model: str) -> pb.ModelInfo:
    try:
        reply = await request.app[EMBEDDING].ListModels(
            pb.ListModelsRequest(), timeout=CALL_TIMEOUT_S, metadata=service_metadata(request.app)
        )
    except grpc.aio.AioRpcError as exc:
        raise embedding_failure(exc) from None
    for info in reply.models:
        if info.name == model:
            return info
    served = ", ".join(m.name for m in reply.models)
    raise IngestionError(
        IngestionErrorCode.INVALID_ARGUMENT,
        f"unknown model {model!r}; served: {served}",
        field="model",
    )


async def create_collection(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    settings = request.app[SETTINGS]
    collection_id = check_id(body.get("collection_id"), "collection_id")
    model = body.get("model", settings.default_model)
    if not isinstance(model, str) or not model:
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, "must be a model name", field="model"
        )
    info = await _model_info(request, model)
    # Chunks must fit the model's window, with room for the special tokens it adds.
    window = max(16, info.max_input_tokens - 2)
    chunk_tokens = _int(body, "chunk_tokens", min(settings.chunk_tokens, window), 16, window)
    overlap_tokens = _int(
        body,
        "overlap_tokens",
        min(settings.overlap_tokens, chunk_tokens // 2),
        0,
        chunk_tokens // 2,
    )
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, "must be an object", field="metadata"
        )
    check_storable(metadata, "metadata")
    created = await store.create_collection(
        request.app[POOL],
        tenant_of(request),
        collection_id,
        model=model,
        dimensions=info.dimensions,
        chunk_tokens=chunk_tokens,
        overlap_tokens=overlap_tokens,
        metadata=metadata,
    )
    if created is None:
        raise IngestionError(
            IngestionErrorCode.CONFLICT,
            f"collection {collection_id!r} exists already",
            field="collection_id",
        )
    return web.json_response(created, status=201)


async def list_collections(request: web.Request) -> web.Response:
    found = await store.list_collections(request.app[POOL], tenant_of(request))
    return web.json_response({"collections": found})


async def get_collection(request: web.Request) -> web.Response:
    collection_id = request.match_info["collection_id"]
    found = await store.get_collection(request.app[POOL], tenant_of(request), collection_id)
    if found is None:
        raise not_found(f"collection {collection_id!r}")
    return web.json_response(found)


async def delete_collection(request: web.Request) -> web.Response:
    collection_id = request.match_info["collection_id"]
    if not await store.delete_collection(request.app[POOL], tenant_of(request), collection_id):
        raise not_found(f"collection {collection_id!r}")
    return web.Response(status=204)
