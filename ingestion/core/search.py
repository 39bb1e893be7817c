"""Search: chunks nearest in meaning to the query (its vector, from the embedding
server's `Embed`), chunks holding its words (PostgreSQL full-text search), or both fused by
reciprocal rank fusion; always within the tenant's collection and the request's filters."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from embedpipe.embedding.v1 import embedding_service_pb2 as embedding_pb
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.protojson import struct_object
from ingestion import store
from ingestion.chunk_filter import ChunkFilter, Condition
from ingestion.core import messages
from ingestion.core.backends import Backends
from ingestion.core.checks import check_between, check_id, check_storable, invalid, not_found
from ingestion.core.fusion import hybrid, ranked
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.upstream import CALL_TIMEOUT_S, embedding_failure

DEFAULT_TOP_K = 5
MAX_TOP_K = 100
DEFAULT_MODE = pb.SEARCH_MODE_HYBRID
DEFAULT_RRF_K = 60
MAX_WEIGHT = 100.0
MAX_CONDITIONS = 32
MAX_LISTED = 1000
MAX_KEY_LENGTH = 256
MAX_KEY_PARTS = 16
#: Re-embeds a search may see switch the collection under it before it gives up.
MODEL_CHANGES = 3


def candidates(top_k: int) -> int:
    """How deep each ranking goes before fusion: deeper than `top_k`, so a chunk ranked
    fair by both signals can pass one ranked high by one."""
    return max(50, 2 * top_k)


async def search(backends: Backends, tenant: str, request: pb.SearchRequest) -> pb.SearchResponse:
    if not request.query.strip():
        raise invalid("query", "must be a non-empty string")
    check_storable(request.query, "query")
    top_k = check_between(
        request.top_k if request.HasField("top_k") else DEFAULT_TOP_K, "top_k", 1, MAX_TOP_K
    )
    mode = request.mode or DEFAULT_MODE
    if mode not in pb.SearchMode.values():
        raise invalid("mode", f"must be one of {', '.join(pb.SearchMode.keys())}")
    weights = _weights(request)
    rrf_k = check_between(
        request.rrf_k if request.HasField("rrf_k") else DEFAULT_RRF_K, "rrf_k", 1, 1000
    )
    chunk_filter = _chunk_filter(request)
    started = time.perf_counter()
    collection = await store.get_collection(backends.pool, tenant, request.collection_id)
    if collection is None:
        raise not_found(f"collection {request.collection_id!r}")

    async def by_vector(limit: int) -> tuple[str, list[dict[str, Any]]]:
        model, size = collection["model"], collection["output_dimensions"]
        for _ in range(MODEL_CHANGES):
            embedded_with, query = await _embed(backends, model, size, request.query)
            try:
                rows = await store.vector_search(
                    backends.pool, tenant, request.collection_id, query, model=model,
                    limit=limit, chunk_filter=chunk_filter, iterative=backends.iterative_scan,
                    collection_chunks=collection["chunk_count"],
                )  # fmt: skip
            except store.ModelChangedError as changed:
                # A re-embed switched the collection since it was read: the new model's.
                model, size = changed.model, changed.output_dimensions
                continue
            return embedded_with, rows
        raise IngestionError(
            IngestionErrorCode.UNAVAILABLE, "the collection's model kept changing; retry"
        )

    async def by_keyword(limit: int) -> list[dict[str, Any]]:
        return await store.keyword_search(
            backends.pool, tenant, request.collection_id, request.query,
            text_search_config=collection["text_search_config"], limit=limit,
            chunk_filter=chunk_filter,
        )  # fmt: skip

    model = collection["model"]
    if mode == pb.SEARCH_MODE_VECTOR:
        model, rows = await by_vector(top_k)
        rows = ranked("vector", rows)
    elif mode == pb.SEARCH_MODE_KEYWORD:
        rows = ranked("keyword", await by_keyword(top_k))
    else:
        (model, vector_rows), keyword_rows = await asyncio.gather(
            by_vector(candidates(top_k)), by_keyword(candidates(top_k))
        )
        rows = hybrid(vector_rows, keyword_rows, weights=weights, rrf_k=rrf_k, limit=top_k)
    label = pb.SearchMode.Name(mode).removeprefix("SEARCH_MODE_").lower()
    backends.metrics.search_duration.labels(label).observe(time.perf_counter() - started)
    return pb.SearchResponse(
        results=[messages.search_result(row) for row in rows], model=model, mode=mode
    )


async def _embed(
    backends: Backends, model: str, dimensions: int | None, query: str
) -> tuple[str, list[float]]:
    """The query's vector from `model` (of `dimensions`, when the collection asks for
    shortened vectors)."""
    try:
        reply = await backends.embedding.Embed(
            embedding_pb.EmbedRequest(
                inputs=[query], model=model, truncate=True, dimensions=dimensions
            ),
            timeout=CALL_TIMEOUT_S,
            metadata=backends.embedding_metadata,
        )
    except grpc.aio.AioRpcError as exc:
        # The query is the request's one input: the server's field for it is ours.
        raise embedding_failure(exc, {"inputs[0]": "query", "inputs": "query"}) from None
    return reply.model, list(reply.embeddings[0].values)


def _weights(request: pb.SearchRequest) -> tuple[float, float]:
    weights = []
    for name in ("vector_weight", "keyword_weight"):
        weight = getattr(request, name) if request.HasField(name) else 1.0
        if not (math.isfinite(weight) and 0 <= weight <= MAX_WEIGHT):
            raise invalid(name, f"must be a number from 0 to {MAX_WEIGHT:g}")
        weights.append(weight)
    if not any(weights):
        raise invalid("vector_weight", "vector_weight or keyword_weight must be above 0")
    return weights[0], weights[1]


def _chunk_filter(request: pb.SearchRequest) -> ChunkFilter:
    contains = struct_object(request.filter) if request.HasField("filter") else None
    check_storable(contains, "filter")
    if len(request.conditions) > MAX_CONDITIONS:
        raise invalid("conditions", f"at most {MAX_CONDITIONS} conditions")
    if len(request.document_ids) > MAX_LISTED:
        raise invalid("document_ids", f"at most {MAX_LISTED} ids")
    return ChunkFilter(
        contains=contains,
        conditions=tuple(
            _condition(condition, f"conditions[{i}]")
            for i, condition in enumerate(request.conditions)
        ),
        document_ids=tuple(
            check_id(document_id, f"document_ids[{i}]")
            for i, document_id in enumerate(request.document_ids)
        ),
    )


def _condition(condition: pb.MetadataCondition, field: str) -> Condition:
    key = condition.key
    path = tuple(key.split("."))
    if not 1 <= len(key) <= MAX_KEY_LENGTH or len(path) > MAX_KEY_PARTS or "" in path:
        raise invalid(
            f"{field}.key",
            f"must be a name or a dotted path: 1-{MAX_KEY_LENGTH} characters,"
            f" at most {MAX_KEY_PARTS} non-empty parts",
        )
    check_storable(key, f"{field}.key")
    test = condition.WhichOneof("test")
    if test == "exists":
        return Condition(path, "exists", condition.exists)
    if test == "equals":
        return Condition(path, "equals", _json_value(condition.equals, f"{field}.equals"))
    if test == "any_of":
        listed = condition.any_of.values
        if not 1 <= len(listed) <= MAX_LISTED:
            raise invalid(f"{field}.any_of", f"must list 1 to {MAX_LISTED} values")
        values = [_json_value(v, f"{field}.any_of[{i}]") for i, v in enumerate(listed)]
        return Condition(path, "any_of", values)
    if test == "range":
        return Condition(path, "range", _bounds(condition.range, f"{field}.range"))
    raise invalid(field, "must set one test: equals, any_of, range or exists")


def _json_value(value: struct_pb2.Value, field: str) -> Any:
    if value.WhichOneof("kind") is None:
        raise invalid(field, "must be a JSON value")
    if value.WhichOneof("kind") == "number_value" and not math.isfinite(value.number_value):
        raise invalid(field, "must be a finite number")
    try:
        plain = json_format.MessageToDict(value)
    except ValueError as exc:  # a non-finite number nested in a list or object
        raise invalid(field, str(exc)) from None
    check_storable(plain, field)
    return plain


def _bounds(bounds: pb.Range, field: str) -> dict[str, Any]:
    given = {
        name: _json_value(getattr(bounds, name), f"{field}.{name}")
        for name in ("gt", "gte", "lt", "lte")
        if bounds.HasField(name)
    }
    if not given:
        raise invalid(field, "must set a bound: gt, gte, lt or lte")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in given.values())
    if not numbers and not all(isinstance(v, str) for v in given.values()):
        raise invalid(field, "bounds must be all numbers or all strings")
    return given
