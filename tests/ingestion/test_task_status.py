"""A task's status only moves forward: a second delivery of its ingestion job (its worker
died after sending the chunks, or Redis repeated the job after a lost reply) re-sends the
chunks but must not set the task back, or the callbacks already stored would never
complete it (a repeated request is deduplicated: no new callback comes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from embedpipe.task_status import TaskStatus
from ingestion import store
from ingestion.db import Pool, connect

TENANT, COLLECTION, DOCUMENT, TASK = "tenant-a", "c", "d", "task-1"
CHUNKS = [store.StagedChunk(f"d:{n}", n, f"Chunk {n}.", {}) for n in range(2)]
VECTOR = [0.5, 0.5, 0.5, 0.5]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    """A database holding one collection and one new (pending) task of a document."""
    pool = await connect(database_url)
    await store.create_collection(
        pool, TENANT, COLLECTION, model="m", dimensions=len(VECTOR),
        chunk_tokens=200, overlap_tokens=0, metadata={},
    )  # fmt: skip
    await store.start_task(
        pool, TENANT, COLLECTION, DOCUMENT, TASK,
        filename=None, content_type=None, metadata={},
    )  # fmt: skip
    yield pool
    await pool.close()


async def _job(pool: Pool) -> None:
    """What the ingestion worker does with a task's job, up to sending its chunks."""
    await store.set_task_status(pool, TENANT, TASK, TaskStatus.CHUNKING)
    task = await store.get_task(pool, TENANT, TASK)
    assert task is not None
    await store.stage_chunks(pool, task, CHUNKS, "hash-1")
    assert await store.embedding_model(pool, TENANT, TASK) is not None


async def test_a_repeated_job_after_the_vectors_are_stored_does_not_set_the_task_back(
    pool: Pool,
) -> None:
    await store.set_task_status(pool, TENANT, TASK, TaskStatus.EXTRACTING)
    await _job(pool)
    stored = await store.store_embeddings(
        pool, TENANT, TASK, [(c.chunk_id, VECTOR) for c in CHUNKS], model="m"
    )
    assert stored.task is not None and stored.task["status"] == "storing"

    await _job(pool)  # the same job again, before the callback consumer promotes the task

    task = await store.get_task(pool, TENANT, TASK)
    assert task is not None and task["status"] == "storing"
    completed = await store.promote(pool, TENANT, TASK)
    assert completed is not None and completed["status"] == "completed"
    assert completed["chunks_embedded"] == completed["chunks_total"] == len(CHUNKS)


async def test_a_status_never_moves_back_nor_off_an_end(pool: Pool) -> None:
    assert await store.set_task_status(pool, TENANT, TASK, TaskStatus.CHUNKING) is not None
    assert await store.set_task_status(pool, TENANT, TASK, TaskStatus.EXTRACTING) is None
    await store.fail_task(pool, TENANT, TASK, error_code="X", error_message="gone")
    assert await store.set_task_status(pool, TENANT, TASK, TaskStatus.CHUNKING) is None
    task = await store.get_task(pool, TENANT, TASK)
    assert task is not None and task["status"] == "failed"
