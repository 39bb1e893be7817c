"""The SQL of re-embedding a collection with another model while search reads the old
vectors (ingestion/migrations/005_reembed.sql).

A re-embed is a task (kind `reembed`). Its chunks are copies of the collection's
searchable chunks, in the next generation, under the task's id; callbacks fill their
vectors as for an upload. Each `step` copies what is missing (documents uploaded or
replaced meanwhile) and, once every copy has its vector, switches: in one transaction the
collection moves to the new model and generation and the old generation's rows go.
Uploads still in flight then are reset, to be embedded again with the new model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingestion.db import Pool
from ingestion.store import (
    REEMBED,
    TERMINAL,
    UPLOAD,
    as_row,
    as_rows,
    create_hnsw_index,
    locked_task,
)


async def start(
    pool: Pool,
    tenant_id: str,
    collection_id: str,
    task_id: str,
    *,
    model: str,
    dimensions: int,
    output_dimensions: int | None,
) -> tuple[dict[str, Any] | None, str | None]:
    """The new re-embed task, or (None, the id of the re-embed in progress; None when the
    collection is gone). Raises
    asyncpg.UndefinedObjectError when the new vectors need halfvec and pgvector is older
    than 0.7 (nothing is started then)."""
    async with pool.acquire() as connection, connection.transaction():
        collection = await connection.fetchrow(
            "SELECT reembed_task_id FROM collections WHERE tenant_id = $1"
            " AND collection_id = $2 FOR UPDATE",
            tenant_id, collection_id,
        )  # fmt: skip
        if collection is None:
            return None, None
        if collection["reembed_task_id"] is not None:
            return None, str(collection["reembed_task_id"])
        await create_hnsw_index(connection, dimensions)
        record = await connection.fetchrow(
            "INSERT INTO tasks (tenant_id, task_id, collection_id, document_id, status, kind,"
            " model, dimensions, output_dimensions)"
            " VALUES ($1, $2, $3, '', 'pending', $4, $5, $6, $7) RETURNING *",
            tenant_id, task_id, collection_id, REEMBED, model, dimensions, output_dimensions,
        )  # fmt: skip
        await connection.execute(
            "UPDATE collections SET reembed_task_id = $3 WHERE tenant_id = $1"
            " AND collection_id = $2",
            tenant_id, collection_id, task_id,
        )  # fmt: skip
    return as_row(record), None


@dataclass(frozen=True)
class Step:
    """What a step did; `task` is the re-embed afterwards (None: no such task)."""

    task: dict[str, Any] | None
    #: The collection moved to the new model in this step.
    switched: bool = False
    #: Copies without a vector yet: to be sent (unembedded_chunks).
    to_send: int = 0


async def step(pool: Pool, tenant_id: str, task_id: str) -> Step:
    """Copy the searchable chunks the re-embed lacks; switch once all have vectors.

    Idempotent, and safe to run from several processes at once (the collection's row is
    locked): run after every change that may complete the re-embed, and again whenever.
    """
    async with pool.acquire() as connection, connection.transaction():
        task = await locked_task(connection, tenant_id, task_id)
        if task is None or task["status"] in TERMINAL:
            return Step(as_row(task))
        key = (tenant_id, task["collection_id"])
        collection = await connection.fetchrow(
            "SELECT * FROM collections WHERE tenant_id = $1 AND collection_id = $2 FOR UPDATE",
            *key,
        )  # fmt: skip
        assert collection is not None  # a collection goes with its tasks
        generation = collection["generation"]
        # Chunks that became searchable since the last step (and those of the first).
        await connection.execute(
            "INSERT INTO chunks (tenant_id, collection_id, document_id, task_id, chunk_id,"
            " position, text, metadata, tsv, live, generation)"
            " SELECT tenant_id, collection_id, document_id, $3, chunk_id, position, text,"
            " metadata, tsv, true, $4 + 1 FROM chunks WHERE tenant_id = $1"
            " AND collection_id = $2 AND live AND generation = $4 ON CONFLICT DO NOTHING",
            *key, task_id, generation,
        )  # fmt: skip
        total, left = await connection.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE embedding IS NULL)"
            " FROM chunks WHERE tenant_id = $1 AND task_id = $2",
            tenant_id, task_id,
        ) or (0, 0)  # fmt: skip
        if left:
            record = await connection.fetchrow(
                "UPDATE tasks SET status = 'embedding', chunks_total = $3, chunks_embedded = $4,"
                " updated_at = now() WHERE tenant_id = $1 AND task_id = $2 RETURNING *",
                tenant_id, task_id, total, total - left,
            )  # fmt: skip
            return Step(as_row(record), to_send=left)
        # The switch. The old vectors go; search's snapshot of the collection tells which
        # generation it reads, so no search sees this half done.
        await connection.execute(
            "DELETE FROM chunks WHERE tenant_id = $1 AND collection_id = $2 AND live"
            " AND generation = $3",
            *key, generation,
        )  # fmt: skip
        await connection.execute(
            "UPDATE collections SET model = $3, dimensions = $4, output_dimensions = $5,"
            " generation = $6, chunk_count = $7, reembed_task_id = NULL"
            " WHERE tenant_id = $1 AND collection_id = $2",
            *key, task["model"], task["dimensions"], task["output_dimensions"],
            generation + 1, total,
        )  # fmt: skip
        # Uploads embedded with the old model and not searchable yet: their vectors go, and
        # they are sent again with the new model (unstamped_uploads).
        reset = await connection.fetch(
            "UPDATE tasks SET model = NULL, dimensions = NULL, output_dimensions = NULL,"
            " chunks_embedded = 0,"
            " status = CASE WHEN status = 'storing' THEN 'embedding' ELSE status END,"
            " updated_at = now() WHERE tenant_id = $1 AND collection_id = $2 AND kind = $3"
            " AND status <> ALL($4::text[]) AND model IS DISTINCT FROM $5"
            " AND model IS NOT NULL RETURNING task_id",
            *key, UPLOAD, TERMINAL, task["model"],
        )  # fmt: skip
        await connection.execute(
            "UPDATE chunks SET embedding = NULL, dimensions = NULL WHERE tenant_id = $1"
            " AND task_id = ANY($2::text[]) AND NOT live",
            tenant_id, [r["task_id"] for r in reset],
        )  # fmt: skip
        record = await connection.fetchrow(
            "UPDATE tasks SET status = 'completed', chunks_total = $3, chunks_embedded = $3,"
            " updated_at = now(), finished_at = now()"
            " WHERE tenant_id = $1 AND task_id = $2 RETURNING *",
            tenant_id, task_id, total,
        )  # fmt: skip
    return Step(as_row(record), switched=True)


async def unembedded_chunks(
    pool: Pool, tenant_id: str, task_id: str, *, after: tuple[str, str], limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` of the task's chunks without a vector, by (document_id, chunk_id),
    those after `after`."""
    records = await pool.fetch(
        "SELECT document_id, chunk_id, text, metadata FROM chunks WHERE tenant_id = $1"
        " AND task_id = $2 AND embedding IS NULL AND (document_id, chunk_id) > ($3, $4)"
        " ORDER BY document_id, chunk_id LIMIT $5",
        tenant_id, task_id, *after, limit,
    )  # fmt: skip
    return as_rows(records)


async def unstamped_uploads(pool: Pool, tenant_id: str, collection_id: str) -> list[str]:
    """Uploads of the collection with chunks to embed but no model: reset by a switch."""
    records = await pool.fetch(
        "SELECT task_id FROM tasks WHERE tenant_id = $1 AND collection_id = $2 AND kind = $3"
        " AND status IN ('embedding', 'storing') AND model IS NULL ORDER BY task_id",
        tenant_id, collection_id, UPLOAD,
    )  # fmt: skip
    return [r["task_id"] for r in records]


async def waiting_to_switch(pool: Pool) -> list[tuple[str, str]]:
    """(tenant_id, task_id) of the re-embeds whose copies all have vectors: their next
    step switches, or copies what changed. Normally the last callback queues it; this finds
    those whose trigger was lost (a crash between a commit and the step's enqueueing, or
    an upload that replaced the last copies still to embed)."""
    records = await pool.fetch(
        "SELECT t.tenant_id, t.task_id FROM collections c JOIN tasks t"
        " ON t.tenant_id = c.tenant_id AND t.task_id = c.reembed_task_id"
        " WHERE t.status = 'embedding' AND NOT EXISTS (SELECT FROM chunks k"
        " WHERE k.tenant_id = t.tenant_id AND k.task_id = t.task_id AND k.embedding IS NULL)"
        # Not started a while after it was accepted: its first step was never queued.
        " OR t.status = 'pending' AND t.updated_at < now() - interval '1 minute'"
    )
    return [(r["tenant_id"], r["task_id"]) for r in records]
