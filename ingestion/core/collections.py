"""Collections: create (with model and chunking settings), get, list, delete."""

from __future__ import annotations

import re

import asyncpg
import grpc

from embedpipe.embedding.v1 import embedding_service_pb2 as embedding_pb
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.protojson import struct_object
from ingestion import store
from ingestion.core import messages
from ingestion.core.backends import Backends
from ingestion.core.checks import check_between, check_id, check_metadata, invalid, not_found
from ingestion.core.pages import page_of
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.upstream import CALL_TIMEOUT_S, embedding_failure


async def model_info(backends: Backends, model: str) -> embedding_pb.ModelInfo:
    try:
        reply = await backends.embedding.ListModels(
            embedding_pb.ListModelsRequest(),
            timeout=CALL_TIMEOUT_S,
            metadata=backends.embedding_metadata,
        )
    except grpc.aio.AioRpcError as exc:
        raise embedding_failure(exc) from None
    for info in reply.models:
        if info.name == model and info.dimensions <= 0:  # not loaded yet: nothing to store
            raise IngestionError(
                IngestionErrorCode.UNAVAILABLE,
                f"model {model[:64]!r} is still loading; retry shortly",
                retry_after_s=1,
            )
        if info.name == model:
            return info
    served = ", ".join(m.name for m in reply.models)
    raise invalid("model", f"unknown model {model[:64]!r}; served: {served}")


def output_dimensions(
    info: embedding_pb.ModelInfo, request: pb.CreateCollectionRequest | pb.ReembedCollectionRequest
) -> int | None:
    """The vector size a request asks of the model (its `dimensions`), when that is not
    the model's own: a model that can shorten its vectors gives 1 up to its own."""
    if not request.HasField("dimensions"):
        return None
    asked = request.dimensions
    if asked == info.dimensions:
        return None
    if not info.supports_dimensions:
        raise invalid("dimensions", f"{info.name!r} gives {info.dimensions} dimensions only")
    return check_between(asked, "dimensions", 1, info.dimensions)


#: A text search configuration's name as PostgreSQL spells one (no schema, no quoting).
TEXT_SEARCH_CONFIG = re.compile(r"[a-z_][a-z0-9_]{0,62}")
DEFAULT_TEXT_SEARCH_CONFIG = "english"


async def _text_search_config(backends: Backends, request: pb.CreateCollectionRequest) -> str:
    if not request.HasField("text_search_config"):
        return DEFAULT_TEXT_SEARCH_CONFIG
    name = request.text_search_config
    if not TEXT_SEARCH_CONFIG.fullmatch(name) or not await store.text_search_config_exists(
        backends.pool, name
    ):
        raise invalid(
            "text_search_config",
            f"unknown text search configuration {name[:64]!r} (e.g. english, simple)",
        )
    return name


async def create_collection(
    backends: Backends, tenant: str, request: pb.CreateCollectionRequest
) -> pb.CreateCollectionResponse:
    settings = backends.settings
    collection_id = check_id(request.collection_id, "collection_id")
    model = request.model if request.HasField("model") else settings.default_model
    if not model:
        raise invalid("model", "must be a model name")
    metadata = struct_object(request.metadata)
    check_metadata(metadata, "metadata")
    info = await model_info(backends, model)
    # Chunks must fit the model's window, with room for the special tokens it adds.
    window = max(16, info.max_input_tokens - 2)
    chunk_tokens = check_between(
        request.chunk_tokens
        if request.HasField("chunk_tokens")
        else min(settings.chunk_tokens, window),
        "chunk_tokens", 16, window,
    )  # fmt: skip
    overlap_tokens = check_between(
        request.overlap_tokens
        if request.HasField("overlap_tokens")
        else min(settings.overlap_tokens, chunk_tokens // 2),
        "overlap_tokens", 0, chunk_tokens // 2,
    )  # fmt: skip
    text_search_config = await _text_search_config(backends, request)
    shortened = output_dimensions(info, request)
    dimensions = shortened or info.dimensions
    try:
        created = await store.create_collection(
            backends.pool, tenant, collection_id,
            model=model, dimensions=dimensions, chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens, metadata=metadata,
            text_search_config=text_search_config, output_dimensions=shortened,
        )  # fmt: skip
    except asyncpg.UndefinedObjectError:
        raise needs_halfvec(model, dimensions) from None
    if created is None:
        raise IngestionError(
            IngestionErrorCode.CONFLICT,
            f"collection {collection_id!r} exists already",
            field="collection_id",
        )
    return pb.CreateCollectionResponse(collection=messages.collection(created))


def needs_halfvec(model: str, dimensions: int) -> IngestionError:
    return invalid(
        "model",
        f"{model!r} gives vectors of {dimensions} dimensions; over"
        f" {store.MAX_VECTOR_INDEXED} they need pgvector >= 0.7 (halfvec) in the database",
    )


async def get_collection(
    backends: Backends, tenant: str, request: pb.GetCollectionRequest
) -> pb.GetCollectionResponse:
    found = await store.describe_collection(backends.pool, tenant, request.collection_id)
    if found is None:
        raise not_found(f"collection {request.collection_id!r}")
    return pb.GetCollectionResponse(collection=messages.collection(found))


async def list_collections(
    backends: Backends, tenant: str, request: pb.ListCollectionsRequest
) -> pb.ListCollectionsResponse:
    page = page_of(request)
    rows = await store.list_collections(
        backends.pool, tenant, after=page.after, limit=page.fetch_size
    )
    return pb.ListCollectionsResponse(
        collections=[messages.collection(row) for row in rows[: page.size]],
        next_page_token=page.next_token(rows, "collection_id"),
    )


async def delete_collection(
    backends: Backends, tenant: str, request: pb.DeleteCollectionRequest
) -> pb.DeleteCollectionResponse:
    if not await store.delete_collection(backends.pool, tenant, request.collection_id):
        raise not_found(f"collection {request.collection_id!r}")
    return pb.DeleteCollectionResponse()
