"""Every SQL statement of the Ingestion Service but a re-embed's (reembed_store.py). Each
takes the tenant first: no query reads or writes a row by id alone, so one tenant can never
reach another's data."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
import numpy as np
from asyncpg.pool import PoolConnectionProxy
from pgvector import Vector

from embedpipe.task_status import FINAL, IN_PROGRESS, TaskStatus
from ingestion.chunk_filter import ChunkFilter, Condition, SqlParameters, filter_sql, in_range_sql
from ingestion.db import Pool

#: Statuses as the SQL statements pass them (text[] parameters). A task never goes back: a
#: job delivered again re-sends its chunks, but must not undo what callbacks stored.
TERMINAL = [str(status) for status in sorted(FINAL)]
PROGRESS = [str(status) for status in IN_PROGRESS]
#: The kinds of task: an upload ingests a document; a re-embed embeds a collection's chunks
#: again with another model (ingestion/reembed_store.py).
UPLOAD = "upload"
REEMBED = "reembed"


#: A connection of the pool (generic in the stubs only: a name for the annotations).
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


def as_row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    """A row as a dict; metadata parsed, times as aware datetimes."""
    if record is None:
        return None
    row = dict(record)
    if isinstance(row.get("metadata"), str):
        row["metadata"] = json.loads(row["metadata"])
    return row


def as_rows(records: Sequence[asyncpg.Record]) -> list[dict[str, Any]]:
    return [r for r in (as_row(x) for x in records) if r is not None]


# --- collections ------------------------------------------------------------------------


async def create_collection(
    pool: Pool,
    tenant_id: str,
    collection_id: str,
    *,
    model: str,
    dimensions: int,
    chunk_tokens: int,
    overlap_tokens: int,
    metadata: dict[str, Any],
    text_search_config: str = "english",
    output_dimensions: int | None = None,
) -> dict[str, Any] | None:
    """The new collection, or None when the tenant already has one of that id.
    asyncpg.UndefinedObjectError when its vectors need halfvec and pgvector is older than
    0.7 (nothing is created then)."""
    async with pool.acquire() as connection, connection.transaction():
        record = await connection.fetchrow(
            "INSERT INTO collections (tenant_id, collection_id, model, dimensions, chunk_tokens,"
            " overlap_tokens, metadata, text_search_config, output_dimensions)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING *",
            tenant_id, collection_id, model, dimensions, chunk_tokens, overlap_tokens,
            json.dumps(metadata), text_search_config, output_dimensions,
        )  # fmt: skip
        await create_hnsw_index(connection, dimensions)
    return as_row(record)


async def create_hnsw_index(connection: Connection, dimensions: int) -> None:
    """The HNSW index of the vectors of that size, unless it exists: one per size, all
    tenants' chunks; a collection's vectors are all of one size."""
    if kind := _indexed_kind(dimensions):
        await connection.execute(
            f"CREATE INDEX IF NOT EXISTS chunks_hnsw_{int(dimensions)} ON chunks USING hnsw"
            f" ((embedding::{kind}({int(dimensions)})) {kind}_cosine_ops)"
            f" WHERE dimensions = {int(dimensions)} AND live"
        )


#: The largest vectors pgvector's HNSW index takes: 2,000 dimensions of 4-byte floats,
#: 4,000 of 2-byte ones (halfvec).
MAX_VECTOR_INDEXED = 2000
MAX_HALFVEC_INDEXED = 4000


def _indexed_kind(dimensions: int) -> str | None:
    """The type vectors of that size are indexed (and compared) as: vector up to 2,000
    dimensions, halfvec (half precision: cosine moves by about 1e-3) up to 4,000, beyond
    that none (searched exactly)."""
    if dimensions <= MAX_VECTOR_INDEXED:
        return "vector"
    if dimensions <= MAX_HALFVEC_INDEXED:
        return "halfvec"
    return None


_WITH_DOCUMENT_COUNT = (
    "SELECT c.*, (SELECT count(*) FROM documents d WHERE d.tenant_id = c.tenant_id"
    " AND d.collection_id = c.collection_id) AS document_count FROM collections c"
)


async def text_search_config_exists(pool: Pool, name: str) -> bool:
    """Whether PostgreSQL has a text search configuration of that name."""
    found = await pool.fetchval(
        "SELECT EXISTS (SELECT FROM pg_ts_config WHERE cfgname = $1"
        " AND pg_ts_config_is_visible(oid))",
        name,
    )
    return bool(found)


async def get_collection(pool: Pool, tenant_id: str, collection_id: str) -> dict[str, Any] | None:
    record = await pool.fetchrow(
        "SELECT * FROM collections WHERE tenant_id = $1 AND collection_id = $2",
        tenant_id, collection_id,
    )  # fmt: skip
    return as_row(record)


async def describe_collection(
    pool: Pool, tenant_id: str, collection_id: str
) -> dict[str, Any] | None:
    """The collection with its `document_count` (counting costs: not for the hot path)."""
    record = await pool.fetchrow(
        f"{_WITH_DOCUMENT_COUNT} WHERE tenant_id = $1 AND collection_id = $2",
        tenant_id, collection_id,
    )  # fmt: skip
    return as_row(record)


async def list_collections(
    pool: Pool, tenant_id: str, *, after: str, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` collections by id, those after the id `after`."""
    records = await pool.fetch(
        f"{_WITH_DOCUMENT_COUNT} WHERE tenant_id = $1 AND collection_id > $2"
        " ORDER BY collection_id LIMIT $3",
        tenant_id, after, limit,
    )  # fmt: skip
    return as_rows(records)


async def delete_collection(pool: Pool, tenant_id: str, collection_id: str) -> bool:
    """Delete a collection with all its documents, chunks, vectors and tasks."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "DELETE FROM chunks WHERE tenant_id = $1 AND collection_id = $2",
            tenant_id, collection_id,
        )  # fmt: skip
        await connection.execute(
            "DELETE FROM tasks WHERE tenant_id = $1 AND collection_id = $2",
            tenant_id, collection_id,
        )  # fmt: skip
        status = await connection.execute(
            "DELETE FROM collections WHERE tenant_id = $1 AND collection_id = $2",
            tenant_id, collection_id,
        )  # fmt: skip
    return bool(status.endswith(" 1"))


# --- documents and tasks -------------------------------------------------------------------


async def start_task(
    pool: Pool,
    tenant_id: str,
    collection_id: str,
    document_id: str,
    task_id: str,
    *,
    filename: str | None,
    content_type: str | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Record an upload: the document (new or existing) and a pending task for it."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "INSERT INTO documents (tenant_id, collection_id, document_id, filename, content_type,"
            " metadata, status) VALUES ($1, $2, $3, $4, $5, $6, 'pending')"
            " ON CONFLICT (tenant_id, collection_id, document_id) DO UPDATE SET"
            " filename = EXCLUDED.filename, content_type = EXCLUDED.content_type,"
            " metadata = EXCLUDED.metadata, updated_at = now()",
            tenant_id, collection_id, document_id, filename, content_type, json.dumps(metadata),
        )  # fmt: skip
        record = await connection.fetchrow(
            "INSERT INTO tasks (tenant_id, task_id, collection_id, document_id, status)"
            " VALUES ($1, $2, $3, $4, 'pending') RETURNING *",
            tenant_id, task_id, collection_id, document_id,
        )  # fmt: skip
    row = as_row(record)
    assert row is not None
    return row


async def get_task(pool: Pool, tenant_id: str, task_id: str) -> dict[str, Any] | None:
    record = await pool.fetchrow(
        "SELECT * FROM tasks WHERE tenant_id = $1 AND task_id = $2", tenant_id, task_id
    )
    return as_row(record)


async def tasks_by_status(pool: Pool) -> dict[str, int]:
    """How many tasks each status has, over every tenant: the operator's view (metrics)."""
    records = await pool.fetch("SELECT status, count(*) AS tasks FROM tasks GROUP BY status")
    return {record["status"]: record["tasks"] for record in records}


async def set_task_status(
    pool: Pool, tenant_id: str, task_id: str, status: TaskStatus
) -> dict[str, Any] | None:
    """Move a task forward to `status` (one in progress); None if it is there or past it."""
    record = await pool.fetchrow(
        "UPDATE tasks SET status = $3, updated_at = now()"
        " WHERE tenant_id = $1 AND task_id = $2"
        " AND array_position($4::text[], status) < array_position($4::text[], $3) RETURNING *",
        tenant_id, task_id, status, PROGRESS,
    )  # fmt: skip
    return as_row(record)


async def fail_task(
    pool: Pool, tenant_id: str, task_id: str, *, error_code: str, error_message: str
) -> dict[str, Any] | None:
    """Mark a task failed and drop its chunks that are not searchable; live ones stay."""
    return await _end_task(pool, tenant_id, task_id, TaskStatus.FAILED, error_code, error_message)


async def cancel_task(pool: Pool, tenant_id: str, task_id: str) -> dict[str, Any] | None:
    """Cancel an unfinished task as failing it would; None if it has ended."""
    return await _end_task(
        pool, tenant_id, task_id, TaskStatus.CANCELLED, "CANCELLED", "cancelled by the client"
    )


async def _end_task(
    pool: Pool,
    tenant_id: str,
    task_id: str,
    status: TaskStatus,
    error_code: str,
    error_message: str,
) -> dict[str, Any] | None:
    async with pool.acquire() as connection, connection.transaction():
        record = await connection.fetchrow(
            "UPDATE tasks SET status = $3, error_code = $4, error_message = $5,"
            " updated_at = now(), finished_at = now()"
            " WHERE tenant_id = $1 AND task_id = $2 AND status <> ALL($6::text[]) RETURNING *",
            tenant_id, task_id, status, error_code, error_message, TERMINAL,
        )  # fmt: skip
        if record is None:
            return None
        # What it made that search does not read: an upload's staged chunks, a re-embed's
        # next generation.
        await connection.execute(
            "DELETE FROM chunks c USING collections k WHERE c.tenant_id = $1 AND c.task_id = $2"
            " AND k.tenant_id = $1 AND k.collection_id = c.collection_id"
            " AND (NOT c.live OR c.generation <> k.generation)",
            tenant_id, task_id,
        )  # fmt: skip
        if record["kind"] == REEMBED:
            await connection.execute(
                "UPDATE collections SET reembed_task_id = NULL"
                " WHERE tenant_id = $1 AND collection_id = $2 AND reembed_task_id = $3",
                tenant_id, record["collection_id"], task_id,
            )  # fmt: skip
        else:
            await connection.execute(
                "UPDATE documents SET status = $4, updated_at = now()"
                " WHERE tenant_id = $1 AND collection_id = $2 AND document_id = $3"
                " AND current_task_id IS NULL",
                tenant_id, record["collection_id"], record["document_id"], status,
            )  # fmt: skip
    return as_row(record)


async def finish_unchanged(pool: Pool, tenant_id: str, task_id: str) -> dict[str, Any] | None:
    """The upload matched the stored content: nothing to embed."""
    async with pool.acquire() as connection, connection.transaction():
        record = await connection.fetchrow(
            "UPDATE tasks SET status = 'unchanged', updated_at = now(), finished_at = now()"
            " WHERE tenant_id = $1 AND task_id = $2 AND status <> ALL($3::text[]) RETURNING *",
            tenant_id, task_id, TERMINAL,
        )  # fmt: skip
        if record is not None:
            await connection.execute(
                "UPDATE documents SET status = 'completed', updated_at = now()"
                " WHERE tenant_id = $1 AND collection_id = $2 AND document_id = $3",
                tenant_id, record["collection_id"], record["document_id"],
            )  # fmt: skip
    return as_row(record)


async def current_content_hash(
    pool: Pool, tenant_id: str, collection_id: str, document_id: str
) -> str | None:
    """The content hash of the document's searchable version, if it has one."""
    value: str | None = await pool.fetchval(
        "SELECT content_hash FROM documents WHERE tenant_id = $1 AND collection_id = $2"
        " AND document_id = $3 AND current_task_id IS NOT NULL",
        tenant_id, collection_id, document_id,
    )  # fmt: skip
    return value


@dataclass(frozen=True)
class StagedChunk:
    chunk_id: str
    position: int
    text: str
    metadata: dict[str, Any]


async def stage_chunks(
    pool: Pool, task: dict[str, Any], chunks: Sequence[StagedChunk], content_hash: str
) -> None:
    """Store a task's chunks (not yet searchable) and how many there are. Idempotent."""
    async with pool.acquire() as connection, connection.transaction():
        # One statement for all; the text is indexed for keyword search the way the
        # collection's text search configuration says.
        await connection.execute(
            "INSERT INTO chunks (tenant_id, collection_id, document_id, task_id, chunk_id,"
            " position, text, metadata, tsv)"
            " SELECT $1, $2, $3, $4, c.chunk_id, c.position, c.text, c.metadata::jsonb,"
            " chunk_words(k.text_search_config::regconfig, c.text)"
            " FROM unnest($5::text[], $6::int[], $7::text[], $8::text[])"
            " AS c(chunk_id, position, text, metadata)"
            " JOIN collections k ON k.tenant_id = $1 AND k.collection_id = $2"
            " ON CONFLICT DO NOTHING",
            task["tenant_id"], task["collection_id"], task["document_id"], task["task_id"],
            [c.chunk_id for c in chunks], [c.position for c in chunks],
            [c.text for c in chunks], [json.dumps(c.metadata) for c in chunks],
        )  # fmt: skip
        await connection.execute(
            "UPDATE tasks SET chunks_total = $3, content_hash = $5, updated_at = now(),"
            " status = CASE WHEN status = 'storing' THEN status ELSE 'embedding' END"
            " WHERE tenant_id = $1 AND task_id = $2 AND status <> ALL($4::text[])",
            task["tenant_id"], task["task_id"], len(chunks), TERMINAL, content_hash,
        )  # fmt: skip


async def locked_task(
    connection: Connection, tenant_id: str, task_id: str
) -> asyncpg.Record | None:
    """The task, locked until the transaction ends."""
    task: asyncpg.Record | None = await connection.fetchrow(
        "SELECT * FROM tasks WHERE tenant_id = $1 AND task_id = $2 FOR UPDATE", tenant_id, task_id
    )
    return task


async def _collection_then_task(
    connection: Connection, tenant_id: str, task_id: str, *, exclusive: bool
) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
    """The task's collection locked (shared, or `exclusive`), then the task locked: in the
    order a re-embed's step locks them (the collection, then the tasks it resets)."""
    collection_id = await connection.fetchval(
        "SELECT collection_id FROM tasks WHERE tenant_id = $1 AND task_id = $2",
        tenant_id, task_id,
    )  # fmt: skip
    collection = await connection.fetchrow(
        "SELECT * FROM collections WHERE tenant_id = $1 AND collection_id = $2"
        f" FOR {'UPDATE' if exclusive else 'SHARE'}",
        tenant_id, collection_id,
    )  # fmt: skip
    return collection, await locked_task(connection, tenant_id, task_id)


async def embedding_model(pool: Pool, tenant_id: str, task_id: str) -> dict[str, Any] | None:
    """The task, its chunks to be embedded with the collection's model now (`model`,
    `dimensions` and `output_dimensions` of the row); None once it has ended.

    Callbacks of another model are stale from then on (store_embeddings drops them). Should
    the task have been embedded with another model before (a re-embed switched the
    collection in between), those vectors are dropped: a task's vectors are of one model.
    """
    async with pool.acquire() as connection, connection.transaction():
        # Shared: no re-embed switches the collection's model until this is committed.
        collection, task = await _collection_then_task(
            connection, tenant_id, task_id, exclusive=False
        )
        if collection is None or task is None or task["status"] in TERMINAL:
            return None
        if task["model"] == collection["model"]:
            return as_row(task)
        if task["model"] is not None:
            await connection.execute(
                "UPDATE chunks SET embedding = NULL, dimensions = NULL"
                " WHERE tenant_id = $1 AND task_id = $2 AND NOT live",
                tenant_id, task_id,
            )  # fmt: skip
        record = await connection.fetchrow(
            "UPDATE tasks SET model = $3, dimensions = $4, output_dimensions = $5,"
            " chunks_embedded = 0, updated_at = now() WHERE tenant_id = $1 AND task_id = $2"
            " RETURNING *",
            tenant_id, task_id, collection["model"], collection["dimensions"],
            collection["output_dimensions"],
        )  # fmt: skip
    return as_row(record)


@dataclass(frozen=True)
class StoreResult:
    """What storing a callback's vectors did; `task` is the task afterwards."""

    stored: int
    task: dict[str, Any] | None
    #: Why nothing was stored, when the callback cannot belong to the task.
    refused: str = ""
    #: The vectors are of a model the task is no longer embedded with: dropped.
    stale: bool = False
    #: Every chunk of the task has its vector now.
    complete: bool = False


async def store_embeddings(
    pool: Pool,
    tenant_id: str,
    task_id: str,
    vectors: Sequence[tuple[str, Sequence[float]]],
    *,
    model: str | None,
) -> StoreResult:
    """Store the vectors of one callback, made by `model` (None: the task's), in one
    transaction; a repeat stores nothing.

    When an upload's last chunk is stored the task moves to `storing`; `promote` then
    makes its chunks the document's searchable ones. A re-embed stays `embedding`: its
    next step (reembed_store.step) decides.
    """
    async with pool.acquire() as connection, connection.transaction():
        task = await locked_task(connection, tenant_id, task_id)
        if task is None or task["status"] in TERMINAL:
            return StoreResult(0, as_row(task))
        if task["model"] is None or model not in (None, task["model"]):
            return StoreResult(0, as_row(task), stale=True)
        expected = task["dimensions"]
        wrong = {len(v) for _, v in vectors} - {expected}
        if wrong:
            return StoreResult(
                0,
                as_row(task),
                refused=f"vectors of {sorted(wrong)} dimensions; {task['model']} gives {expected}",
            )
        # One statement for the whole callback, not a round trip per chunk.
        status = await connection.execute(
            "UPDATE chunks AS c SET embedding = v.embedding, dimensions = $4"
            " FROM unnest($3::text[], $5::vector[]) AS v(chunk_id, embedding)"
            " WHERE c.tenant_id = $1 AND c.task_id = $2 AND c.chunk_id = v.chunk_id"
            " AND c.embedding IS NULL",
            tenant_id, task_id, [chunk_id for chunk_id, _ in vectors], expected,
            [Vector(np.asarray(vector, dtype=np.float32)) for _, vector in vectors],
        )  # fmt: skip
        stored = int(status.rsplit(" ", 1)[1])
        if task["kind"] == REEMBED:
            # Counted, not added up: uploads of the collection meanwhile replace or drop
            # chunks of the re-embed (and its next step copies their new versions).
            left = await connection.fetchval(
                "SELECT count(*) FROM chunks WHERE tenant_id = $1 AND task_id = $2"
                " AND embedding IS NULL",
                tenant_id, task_id,
            )  # fmt: skip
            embedded, done = max(0, task["chunks_total"] - left), left == 0
        else:
            embedded = task["chunks_embedded"] + stored
            done = embedded >= task["chunks_total"] > 0
        record = await connection.fetchrow(
            "UPDATE tasks SET chunks_embedded = $3, updated_at = now(),"
            " status = CASE WHEN $4 AND kind = 'upload' THEN 'storing' ELSE status END"
            " WHERE tenant_id = $1 AND task_id = $2 RETURNING *",
            tenant_id, task_id, embedded, done,
        )  # fmt: skip
    return StoreResult(stored, as_row(record), complete=done)


async def promote(pool: Pool, tenant_id: str, task_id: str) -> dict[str, Any] | None:
    """Make a fully embedded task's chunks the document's searchable ones, in one
    transaction with dropping the previous ones: search never sees a half-updated document.
    Idempotent: a task already completed is returned as it is."""
    async with pool.acquire() as connection, connection.transaction():
        collection, task = await _collection_then_task(
            connection, tenant_id, task_id, exclusive=True
        )
        if collection is None or task is None or task["status"] != TaskStatus.STORING:
            return as_row(task)
        generation = collection["generation"]
        key = (tenant_id, task["collection_id"], task["document_id"])
        await connection.execute(
            # Only the live (searchable) chunks, of every generation (a re-embed's copies
            # of the previous version go too): another task of this document may still be
            # in progress, and its staged chunks are its own.
            "DELETE FROM chunks WHERE tenant_id = $1 AND collection_id = $2"
            " AND document_id = $3 AND task_id <> $4 AND live",
            *key, task_id,
        )  # fmt: skip
        await connection.execute(
            "UPDATE chunks SET live = true, generation = $3 WHERE tenant_id = $1"
            " AND task_id = $2",
            tenant_id, task_id, generation,
        )  # fmt: skip
        # The collection's count of searchable chunks, before the document's changes.
        await connection.execute(
            "UPDATE collections SET chunk_count = chunk_count + $4 - coalesce((SELECT"
            " d.chunk_count FROM documents d WHERE d.tenant_id = $1 AND d.collection_id = $2"
            " AND d.document_id = $3 AND d.current_task_id IS NOT NULL), 0)"
            " WHERE tenant_id = $1 AND collection_id = $2",
            *key, task["chunks_total"],
        )  # fmt: skip
        await connection.execute(
            "UPDATE documents SET status = 'completed', current_task_id = $4, chunk_count = $5,"
            " content_hash = $6, updated_at = now()"
            " WHERE tenant_id = $1 AND collection_id = $2 AND document_id = $3",
            *key, task_id, task["chunks_total"], task["content_hash"],
        )  # fmt: skip
        record = await connection.fetchrow(
            "UPDATE tasks SET status = 'completed', updated_at = now(), finished_at = now()"
            " WHERE tenant_id = $1 AND task_id = $2 RETURNING *",
            tenant_id, task_id,
        )  # fmt: skip
    return as_row(record)


async def list_documents(
    pool: Pool, tenant_id: str, collection_id: str, *, after: str, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` documents by id, those after the id `after`."""
    records = await pool.fetch(
        "SELECT * FROM documents WHERE tenant_id = $1 AND collection_id = $2"
        " AND document_id > $3 ORDER BY document_id LIMIT $4",
        tenant_id, collection_id, after, limit,
    )  # fmt: skip
    return as_rows(records)


async def get_document(
    pool: Pool, tenant_id: str, collection_id: str, document_id: str
) -> dict[str, Any] | None:
    record = await pool.fetchrow(
        "SELECT * FROM documents WHERE tenant_id = $1 AND collection_id = $2"
        " AND document_id = $3",
        tenant_id, collection_id, document_id,
    )  # fmt: skip
    return as_row(record)


async def delete_document(pool: Pool, tenant_id: str, collection_id: str, document_id: str) -> bool:
    """Delete a document with its chunks and vectors (and its tasks' staged chunks)."""
    async with pool.acquire() as connection, connection.transaction():
        # The collection first, as a re-embed's step locks it (then the tasks it resets).
        await connection.execute(
            "SELECT FROM collections WHERE tenant_id = $1 AND collection_id = $2 FOR UPDATE",
            tenant_id, collection_id,
        )  # fmt: skip
        # Unfinished tasks of the document end now, so none can bring its chunks back.
        await connection.execute(
            "UPDATE tasks SET status = 'failed', error_code = 'DOCUMENT_DELETED',"
            " error_message = 'the document was deleted', updated_at = now(),"
            " finished_at = now() WHERE tenant_id = $1 AND collection_id = $2"
            " AND document_id = $3 AND status <> ALL($4::text[])",
            tenant_id, collection_id, document_id, TERMINAL,
        )  # fmt: skip
        await connection.execute(
            "DELETE FROM chunks WHERE tenant_id = $1 AND collection_id = $2 AND document_id = $3",
            tenant_id, collection_id, document_id,
        )  # fmt: skip
        status = await connection.execute(
            "WITH gone AS (DELETE FROM documents WHERE tenant_id = $1 AND collection_id = $2"
            " AND document_id = $3 RETURNING chunk_count)"
            " UPDATE collections SET chunk_count = chunk_count - (SELECT chunk_count FROM gone)"
            " WHERE tenant_id = $1 AND collection_id = $2 AND EXISTS (SELECT FROM gone)",
            tenant_id, collection_id, document_id,
        )  # fmt: skip
    return bool(status.endswith(" 1"))


_SEARCH_COLUMNS = "document_id, chunk_id, position, text, metadata"


class ModelChangedError(Exception):
    """The collection's vectors are of another model than the query's now: a re-embed
    switched it since the query was embedded. Embed the query again and search again."""

    def __init__(self, model: str, output_dimensions: int | None) -> None:
        super().__init__(f"the collection is embedded with {model} now")
        #: The collection's model now, and the vector size it asks of it.
        self.model = model
        self.output_dimensions = output_dimensions


async def vector_search(
    pool: Pool,
    tenant_id: str,
    collection_id: str,
    query: Sequence[float],
    *,
    model: str,
    limit: int,
    chunk_filter: ChunkFilter,
    iterative: bool,
    collection_chunks: int,
) -> list[dict[str, Any]]:
    """The `limit` live chunks nearest to `query` (a vector of `model`, of the collection's
    size) by cosine distance
    (`score`, the cosine similarity), of the tenant's collection and its filter only,
    however small a share of the table they are. ModelChangedError when the collection's
    vectors are of another model or size.

    A collection of at most EXACT_BELOW chunks is searched exactly. A larger one through
    the HNSW index every tenant's chunks of one size share, which PostgreSQL walks before
    it filters: with `iterative` (pgvector >= 0.8) the walk goes on until it has `limit`
    matches; should it give up first (hnsw.max_scan_tuples), or without iterative scans at
    all, the search is exact over the collection's rows.
    """
    dimensions = len(query)
    parameters = SqlParameters(
        tenant_id, collection_id, Vector(np.asarray(query, dtype=np.float32)), limit
    )
    async with _searching(pool, tenant_id, collection_id) as (connection, collection):
        if collection is None:
            return []
        if collection["model"] != model or collection["dimensions"] != dimensions:
            raise ModelChangedError(collection["model"], collection["output_dimensions"])
        where = (
            f"{_scope(collection, parameters)} AND dimensions = {dimensions}"
            f" AND {filter_sql(chunk_filter, parameters)}"
        )
        compared = f"{_indexed_kind(dimensions) or 'vector'}({dimensions})"
        distance = f"embedding::{compared} <=> ($3::vector)::{compared}"
        if iterative and collection_chunks > EXACT_BELOW and chunk_filter.indexed:
            # An index finds the chunks that pass: when few do, the exact search over them
            # is quicker than the walk, which meets one of them in a hundred tuples or more
            # (bench/search: containment keeping 1% of a collection of 100,000 chunks,
            # p99 54 ms walking, ... exact).
            few = await _exact_if_few(connection, chunk_filter, parameters, where, distance)
            if few is not None:
                return few
        if iterative and collection_chunks > EXACT_BELOW:
            # Measured on bench/search's 200,000 chunks: ef_search 400 took recall@10 of
            # collections of 10% of the table from 0.89 (100) to 0.985, p99 15 -> 22 ms;
            # relaxed order (re-sorted here) kept filtered 1% shares at 0.98 (strict: 0.95).
            ef_search = min(1000, max(400, 8 * limit))
            # No sorting plan: PostgreSQL chose to sort a collection of 10,000 chunks of
            # the 200,000 (85 ms) over walking the index (15 ms).
            await connection.execute(
                "SET LOCAL hnsw.iterative_scan = relaxed_order;"
                f" SET LOCAL hnsw.ef_search = {ef_search}; SET LOCAL enable_sort = off"
            )
            records = await connection.fetch(
                f"WITH nearest AS MATERIALIZED (SELECT {_SEARCH_COLUMNS}, {distance} AS distance"
                f" FROM chunks WHERE {where} ORDER BY {distance} LIMIT $4)"
                f" SELECT {_SEARCH_COLUMNS}, 1 - distance AS score FROM nearest ORDER BY distance",
                *parameters.values,
            )
            if len(records) == limit:
                return as_rows(records)
            await connection.execute("SET LOCAL enable_sort = on")
        # Exact: the collection's (filtered) rows first, through a btree or GIN index, then
        # sorted.
        records = await connection.fetch(
            _nearest_of(
                f"SELECT task_id, chunk_id, {distance} AS distance FROM chunks WHERE {where}"
            ),
            *parameters.values,
        )
    return as_rows(records)


def _nearest_of(candidates: str, *, first: str = "", passing: bool = False) -> str:
    """The statement of an exact search over `candidates`, a query of the (task_id,
    chunk_id, distance) of the chunks that pass (after the CTE `first`, if any): the
    nearest $4, of which alone the text and metadata are read; with `passing`, each row
    also counts the candidates."""
    count = ", (SELECT count(*) FROM candidates) AS passing" if passing else ""
    return (
        f"WITH {first + ',' if first else ''} candidates AS MATERIALIZED ({candidates}),"
        " nearest AS (SELECT task_id, chunk_id, distance FROM candidates"
        " ORDER BY distance LIMIT $4)"
        " SELECT c.document_id, c.chunk_id, c.position, c.text, c.metadata,"
        f" 1 - nearest.distance AS score{count} FROM nearest JOIN chunks AS c"
        " ON c.tenant_id = $1 AND c.task_id = nearest.task_id AND c.chunk_id = nearest.chunk_id"
        " ORDER BY nearest.distance"
    )


#: Collections of at most this many chunks are searched exactly: 2,000 took 11 ms on the
#: 200,000 chunks of bench/search, as the index walk did.
EXACT_BELOW = 2000


async def _exact_if_few(
    connection: Connection,
    chunk_filter: ChunkFilter,
    parameters: SqlParameters,
    where: str,
    distance: str,
) -> list[dict[str, Any]] | None:
    """The exact answer when at most EXACT_BELOW chunks pass an indexed filter, else None.

    A numeric range: its chunks counted in the btree of chunk_numbers first (an index-only
    scan, stopped past the threshold), then fetched one by one by key, a nested loop (left
    to choose, PostgreSQL hashed all 100,000 chunks of the collection to join 2,000). Any
    other indexed filter, or a wide range with one: one statement, PostgreSQL finding its
    chunks by the GIN or btree index and stopping past the threshold."""
    exact = SqlParameters(*parameters.values)  # its own: the walk after it has fewer
    if (condition := chunk_filter.number_range) is not None:
        counting = SqlParameters(*parameters.values[:2])  # the tenant and the collection
        passing = await connection.fetchval(
            f"SELECT count(*) FROM ({in_range_sql(condition, counting)}"
            f" LIMIT {EXACT_BELOW + 1}) AS found",
            *counting.values,
        )
        if passing <= EXACT_BELOW:
            return await _exact_in_range(connection, condition, exact, where, distance)
        if not chunk_filter.indexed_in_chunks:
            return None
    records = await connection.fetch(
        _nearest_of(
            f"SELECT task_id, chunk_id, {distance} AS distance FROM chunks WHERE {where}"
            f" LIMIT {EXACT_BELOW + 1}",
            passing=True,
        ),
        *exact.values,
    )
    if records and records[0]["passing"] > EXACT_BELOW:
        return None
    return [{k: v for k, v in row.items() if k != "passing"} for row in as_rows(records)]


async def _exact_in_range(
    connection: Connection,
    condition: Condition,
    parameters: SqlParameters,
    where: str,
    distance: str,
) -> list[dict[str, Any]]:
    """The exact answer among the few chunks a numeric range keeps, fetched by key."""
    in_range = in_range_sql(condition, parameters)
    records = await connection.fetch(
        _nearest_of(
            f"SELECT m.* FROM found, LATERAL (SELECT task_id, chunk_id, {distance} AS distance"
            f" FROM chunks WHERE task_id = found.task_id AND chunk_id = found.chunk_id"
            f" AND {where} OFFSET 0) AS m",
            first=f"found AS MATERIALIZED ({in_range})",
        ),
        *parameters.values,
    )
    return as_rows(records)


def _scope(collection: asyncpg.Record, parameters: SqlParameters) -> str:
    """The searchable chunks of the collection ($1, $2): its current generation's."""
    return (
        "tenant_id = $1 AND collection_id = $2 AND live"
        f" AND generation = {parameters.add(collection['generation'])}"
    )


@asynccontextmanager
async def _searching(
    pool: Pool, tenant_id: str, collection_id: str
) -> AsyncIterator[tuple[PoolConnectionProxy[asyncpg.Record], asyncpg.Record | None]]:
    """A connection for a search, with the collection's model and generation as the
    search's statements see it.

    One snapshot (repeatable read) for all: a re-embed that switches the collection
    meanwhile is seen by none of them, so a search reads one generation's vectors, whole.
    Statements are planned for their own values: a statement run often gets a cached
    generic plan, which knows neither the collection's size nor the query; for a
    collection of 100,000 chunks it sorted them all (770 ms) where the index answers in
    7 ms (bench/search.py)."""
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        collection = await connection.fetchrow(
            "SELECT model, dimensions, output_dimensions, generation FROM collections"
            " WHERE tenant_id = $1 AND collection_id = $2",
            tenant_id, collection_id,
        )  # fmt: skip
        yield connection, collection


async def keyword_search(
    pool: Pool,
    tenant_id: str,
    collection_id: str,
    query: str,
    *,
    text_search_config: str,
    limit: int,
    chunk_filter: ChunkFilter,
) -> list[dict[str, Any]]:
    """Up to `limit` live chunks holding every word of the query (as the collection's text
    search configuration stems them; web search syntax: "a phrase", `or`, `-word`),
    ranked by cover density (`score`): more of the words, and closer together, first.

    Any-of-the-words was measured too: on the labelled set of docs/search-quality.md it
    took hybrid's nDCG@10 from 0.73 down to 0.55, common words outranking rare ones (the
    rank knows no word's rarity)."""
    parameters = SqlParameters(tenant_id, collection_id, text_search_config, query, limit)
    words = "websearch_to_tsquery($3::regconfig, $4)"
    async with _searching(pool, tenant_id, collection_id) as (connection, collection):
        if collection is None:
            return []
        records = await connection.fetch(
            f"SELECT {_SEARCH_COLUMNS}, ts_rank_cd(tsv, words) AS score"
            f" FROM chunks, (SELECT {words} AS words) AS query"
            f" WHERE {_scope(collection, parameters)} AND tsv @@ words"
            f" AND {filter_sql(chunk_filter, parameters)}"
            " ORDER BY score DESC, document_id, position LIMIT $5",
            *parameters.values,
        )
    return as_rows(records)
