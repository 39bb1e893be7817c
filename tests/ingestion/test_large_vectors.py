"""Vectors over pgvector's 2,000-dimension index limit (OpenAI's text-embedding-3-large
gives 3,072) are stored as they come and indexed as halfvec: search goes through the
index and finds the nearest chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from ingestion import store
from ingestion.chunk_filter import ChunkFilter
from ingestion.db import Pool, connect
from tests.support.openai_standin import standin_vector

DIMENSIONS = 3072
CHUNKS = 2500  # over EXACT_BELOW: searched through the index


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    opened = await connect(database_url)
    yield opened
    await opened.close()


async def test_a_3072_dimension_collection_stores_and_searches_through_an_index(
    pool: Pool, database_url: str
) -> None:
    # Sessions flush their statistics as they end: one pool loads, another searches.
    loading = await connect(database_url)
    created = await store.create_collection(
        loading, "tenant-a", "large", model="text-embedding-3-large", dimensions=DIMENSIONS,
        chunk_tokens=200, overlap_tokens=0, metadata={},
    )  # fmt: skip
    assert created is not None
    texts = [f"passage {i} about topic {i % 17}" for i in range(CHUNKS)]
    vectors = np.stack([standin_vector(text, DIMENSIONS) for text in texts])
    # The way a document's chunks are stored: staged, embedded by callbacks, promoted.
    task = await store.start_task(
        loading, "tenant-a", "large", "doc", "task-1", filename=None, content_type=None,
        metadata={},
    )  # fmt: skip
    staged = [store.StagedChunk(f"c{i}", i, text, {}) for i, text in enumerate(texts)]
    await store.stage_chunks(loading, task, staged, "hash")
    stored = await store.store_embeddings(
        loading, "tenant-a", "task-1", [(f"c{i}", list(v)) for i, v in enumerate(vectors)]
    )
    assert stored.stored == CHUNKS and not stored.refused
    await store.promote(loading, "tenant-a", "task-1")
    async with loading.acquire() as connection:
        await connection.execute("ANALYZE chunks")  # as autovacuum does after a load

    await loading.close()
    async with pool.acquire() as connection:
        kind = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", f"chunks_hnsw_{DIMENSIONS}"
        )
        assert "halfvec(3072)" in kind and "halfvec_cosine_ops" in kind
    before = await settled_index_reads(pool)
    searching = await connect(database_url)
    for seed in range(5):
        query = vectors[seed * 7] + 0.3 * standin_vector(f"noise {seed}", DIMENSIONS)
        query /= np.linalg.norm(query)
        found = await store.vector_search(
            searching, "tenant-a", "large", list(query), limit=10, chunk_filter=ChunkFilter(),
            iterative=True, collection_chunks=CHUNKS,
        )  # fmt: skip
        exact = [f"c{i}" for i in np.argsort(-(vectors @ query))[:10]]
        ids = [row["chunk_id"] for row in found]
        assert ids[0] == f"c{seed * 7}"
        assert len(set(ids) & set(exact)) >= 9  # half precision may swap a near tie
        assert abs(found[0]["score"] - float(vectors[seed * 7] @ query)) < 5e-3
    await searching.close()
    after = await settled_index_reads(pool)
    assert after > before  # the searches read the HNSW index


async def settled_index_reads(pool: Pool) -> int:
    """Blocks of the HNSW index read so far (pgvector counts no idx_scan), once the
    sessions that ended have reported theirs (two equal readings in a row)."""
    last = -1
    while True:
        async with pool.acquire() as connection:
            reads: int = await connection.fetchval(
                "SELECT idx_blks_hit + idx_blks_read FROM pg_statio_user_indexes"
                " WHERE indexrelname = $1",
                f"chunks_hnsw_{DIMENSIONS}",
            )
        if reads == last:
            return reads
        last = reads
        await asyncio.sleep(0.3)
