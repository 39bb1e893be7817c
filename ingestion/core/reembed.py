"""Re-embedding a collection with another model while search keeps serving the current
vectors: the request is checked here and becomes a task whose steps the ingestion worker
runs (ingestion/reembedding.py, ingestion/reembed_store.py)."""

from __future__ import annotations

import uuid

import asyncpg

from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from ingestion import reembed_store, store
from ingestion.core import messages
from ingestion.core.backends import Backends
from ingestion.core.checks import invalid, not_found
from ingestion.core.collections import model_info, needs_halfvec, output_dimensions
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.events import publish
from ingestion.jobs import enqueue_reembed_step


async def reembed_collection(
    backends: Backends, tenant: str, request: pb.ReembedCollectionRequest
) -> pb.ReembedCollectionResponse:
    collection = await store.get_collection(backends.pool, tenant, request.collection_id)
    if collection is None:
        raise not_found(f"collection {request.collection_id!r}")
    if not request.model:
        raise invalid("model", "must be a model name")
    if request.model == collection["model"]:
        raise invalid(
            "model",
            f"the collection is embedded with {request.model!r} already; a re-embed needs"
            " another model",
        )
    info = await model_info(backends, request.model)
    if collection["chunk_tokens"] > info.max_input_tokens - 2:
        raise invalid(
            "model",
            f"{request.model!r} reads at most {info.max_input_tokens} tokens; the collection's"
            f" chunks have up to {collection['chunk_tokens']} (and 2 special tokens)",
        )
    shortened = output_dimensions(info, request)
    dimensions = shortened or info.dimensions
    task_id = uuid.uuid4().hex
    try:
        task, running = await reembed_store.start(
            backends.pool, tenant, request.collection_id, task_id,
            model=info.name, dimensions=dimensions, output_dimensions=shortened,
        )  # fmt: skip
    except asyncpg.UndefinedObjectError:
        raise needs_halfvec(info.name, dimensions) from None
    if task is None:
        if running is None:
            raise not_found(f"collection {request.collection_id!r}")
        raise IngestionError(
            IngestionErrorCode.FAILED_PRECONDITION,
            f"the collection is being re-embedded already (task {running})",
            field="collection_id",
        )
    try:
        await enqueue_reembed_step(backends.redis, backends.keys, tenant, task_id)
    except BaseException:
        # Not queued: the collection must not wait for it (the client gets UNAVAILABLE).
        await store.fail_task(
            backends.pool, tenant, task_id,
            error_code=IngestionErrorCode.UNAVAILABLE.value, error_message="could not be queued",
        )  # fmt: skip
        raise
    await publish(backends.redis, backends.keys, task)
    return pb.ReembedCollectionResponse(task=messages.task(task))
