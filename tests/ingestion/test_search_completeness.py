"""Search returns `top_k` results, and the nearest ones, however small a share of the
table its collection (or its filter) is. Every tenant's chunks share one HNSW index, which
PostgreSQL walks before it applies the tenant and collection filters: with a fixed walk, a
collection of 9% of a table got 6 results of 10 asked."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest
import pytest_asyncio

from ingestion import store
from ingestion.chunk_filter import ChunkFilter, Condition
from ingestion.db import Pool, connect
from ingestion.store import EXACT_BELOW

#: Small vectors: the index is built in seconds, and the filtering problem is the same.
DIMENSIONS = 16
OTHERS = 60_000  # other tenants' chunks
TOP_K = 10
#: The tenant's collections, by the share of the table they are.
SIZES = {"nine-percent": 6_000, "one-percent": 660, "tiny": 6}


#: What promoting documents keeps up; rows copied in directly need it counted.
COUNT_CHUNKS = (
    "UPDATE collections c SET chunk_count = (SELECT count(*) FROM chunks k"
    " WHERE k.tenant_id = c.tenant_id AND k.collection_id = c.collection_id AND k.live)"
)


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSIONS))
    unit: np.ndarray = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return unit


def metadata(i: int) -> dict[str, object]:
    """Every tenth chunk is `{"kind": "rare"}`; each has its number `n` (nested too, and
    first in a list)."""
    return {"n": i, "at": {"n": i}, "list": [i], **({"kind": "rare"} if i % 10 == 0 else {})}


def chunk_rows(tenant: str, collection: str, vectors: np.ndarray) -> list[tuple[object, ...]]:
    """Live chunks, one a document."""
    return [
        (tenant, collection, f"doc-{i}", f"task-{collection}", f"doc-{i}:0", 0, f"chunk {i}",
         json.dumps(metadata(i)), vector, DIMENSIONS, True)
        for i, vector in enumerate(vectors)
    ]  # fmt: skip


#: One table for the module (building it takes a while): its tests only add to it, in
#: collections of their own, or delete what no later test reads.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(postgres: str) -> AsyncIterator[Pool]:
    """The table: other tenants' chunks and ours; the HNSW index built once they are in."""
    emptying = await asyncpg.connect(postgres)
    try:
        await emptying.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await emptying.close()
    opened = await connect(postgres)
    try:
        for collection in ("big", *SIZES):
            tenant = "others" if collection == "big" else "mine"
            await store.create_collection(
                opened, tenant, collection, model="m", dimensions=DIMENSIONS,
                chunk_tokens=200, overlap_tokens=40, metadata={},
            )  # fmt: skip
        rows = chunk_rows("others", "big", unit_vectors(OTHERS, 1))
        for seed, (collection, size) in enumerate(SIZES.items(), start=2):
            rows += chunk_rows("mine", collection, unit_vectors(size, seed))
        async with opened.acquire() as connection:
            index = await connection.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = $1",
                f"chunks_hnsw_{DIMENSIONS}",
            )
            await connection.execute(f"DROP INDEX chunks_hnsw_{DIMENSIONS}")
            await connection.copy_records_to_table(
                "chunks", records=rows,
                columns=["tenant_id", "collection_id", "document_id", "task_id", "chunk_id",
                         "position", "text", "metadata", "embedding", "dimensions", "live"],
            )  # fmt: skip
            await connection.execute(index)
            await connection.execute("ANALYZE chunks")
            await connection.execute(COUNT_CHUNKS)
        yield opened
    finally:
        await opened.close()


def nearest(
    vectors: np.ndarray,
    query: np.ndarray,
    *,
    rare_only: bool = False,
    below: int | None = None,
    among: set[int] | None = None,
) -> list[str]:
    order = np.argsort(-(vectors @ query), kind="stable")
    ids = [
        int(i)
        for i in order
        if (not rare_only or i % 10 == 0)
        and (below is None or i < below)
        and (among is None or i in among)
    ]
    return [f"doc-{i}:0" for i in ids[:TOP_K]]


@pytest.mark.parametrize("iterative", [True, False], ids=["pgvector 0.8", "older pgvector"])
async def test_every_share_of_the_table_gets_top_k_and_its_nearest_chunks(
    pool: Pool, iterative: bool
) -> None:
    recalls = []
    for seed, (collection, size) in enumerate(SIZES.items(), start=2):
        vectors = unit_vectors(size, seed)
        for query_seed in range(5):
            query = unit_vectors(1, 100 + query_seed)[0]
            for rare_only in (False, True):  # a filter keeping a tenth of the collection
                expected = nearest(vectors, query, rare_only=rare_only)
                found = await store.vector_search(
                    pool, "mine", collection, list(query), model="m", limit=TOP_K,
                    chunk_filter=ChunkFilter(contains={"kind": "rare"} if rare_only else None),
                    iterative=iterative, collection_chunks=size,
                )  # fmt: skip
                ids = [row["chunk_id"] for row in found]
                assert len(ids) == len(expected), (collection, rare_only)
                scores = [row["score"] for row in found]
                assert scores == sorted(scores, reverse=True)  # nearest first
                recalls.append(len(set(ids) & set(expected)) / len(expected))
                if not iterative:
                    assert ids == expected  # exact search: exactly the nearest
    assert min(recalls) >= 0.9 and sum(recalls) / len(recalls) >= 0.97, recalls


async def test_a_range_keeping_few_chunks_of_a_large_collection_gets_the_nearest_of_them(
    pool: Pool,
) -> None:
    """A numeric range is found through the chunk numbers' index, whatever share it keeps:
    50%, 1%, 0.1% and 0.05% of a collection of 6,000 chunks (most of a 66,000-chunk table),
    at a top-level and at a nested path. A chunk's numbers go with it."""
    size = SIZES["nine-percent"]
    vectors = unit_vectors(size, 2)
    for path, below in itertools.product([("n",), ("at", "n")], (3000, 60, 6, 3)):
        chunk_filter = ChunkFilter(conditions=(Condition(path, "range", {"lt": below}),))
        for query_seed in range(3):
            query = unit_vectors(1, 200 + query_seed)[0]
            found = await store.vector_search(
                pool, "mine", "nine-percent", list(query), model="m", limit=TOP_K,
                chunk_filter=chunk_filter, iterative=True, collection_chunks=size,
            )  # fmt: skip
            ids = [row["chunk_id"] for row in found]
            expected = nearest(vectors, query, below=below)
            if below <= EXACT_BELOW:  # few pass: searched exactly
                assert ids == expected, (path, below)
            else:
                assert len(set(ids) & set(expected)) >= 9, (path, below)
    count = "SELECT count(*) FROM chunk_numbers WHERE tenant_id = 'mine' AND collection_id = $1"
    assert await pool.fetchval(count, "tiny") == 2 * SIZES["tiny"]  # n and at.n
    assert await store.delete_collection(pool, "mine", "tiny")
    assert await pool.fetchval(count, "tiny") == 0


async def test_a_range_through_a_list_or_beside_a_narrower_filter_is_still_complete(
    pool: Pool,
) -> None:
    """The index holds numbers reached through objects only: a range at a list's position
    (`list.0`) is tested chunk by chunk and still finds its chunks. A range keeping half a
    collection beside a filter on five documents searches those five exactly."""
    size = SIZES["nine-percent"]
    vectors = unit_vectors(size, 2)
    query = unit_vectors(1, 300)[0]
    at_position = ChunkFilter(conditions=(Condition(("list", "0"), "range", {"lt": 3000}),))
    found = await store.vector_search(
        pool, "mine", "nine-percent", list(query), model="m", limit=TOP_K,
        chunk_filter=at_position, iterative=True, collection_chunks=size,
    )  # fmt: skip
    ids = [row["chunk_id"] for row in found]
    assert len(set(ids) & set(nearest(vectors, query, below=3000))) >= 9, ids
    documents = {7, 1234, 2999, 3000, 5000}
    beside = ChunkFilter(
        conditions=(Condition(("n",), "range", {"lt": 3000}),),
        document_ids=tuple(f"doc-{i}" for i in documents),
    )
    found = await store.vector_search(
        pool, "mine", "nine-percent", list(query), model="m", limit=TOP_K,
        chunk_filter=beside, iterative=True, collection_chunks=size,
    )  # fmt: skip
    expected = nearest(vectors, query, below=3000, among=documents)
    assert [row["chunk_id"] for row in found] == expected and len(expected) == 3


async def test_numbers_at_paths_no_filter_can_name_stay_out_of_the_index(pool: Pool) -> None:
    """A key longer than a filter's 256 characters (too long for a btree row at 3,000), a
    path deeper than 16 parts and a key like a list position: the chunk is stored, only
    its other numbers are indexed."""
    deep: dict[str, object] = {"n": 1}
    for _ in range(20):
        deep = {"d": deep}
    odd = {"x" * 3000: 1, "deep": deep, "list": {"0": 5}, "kept": 2}
    await store.create_collection(
        pool, "mine", "odd", model="m", dimensions=DIMENSIONS,
        chunk_tokens=200, overlap_tokens=40, metadata={},
    )  # fmt: skip
    row = ("mine", "odd", "doc-odd", "task-odd", "doc-odd:0", 0, "odd", json.dumps(odd),
           unit_vectors(1, 9)[0], DIMENSIONS, True)  # fmt: skip
    async with pool.acquire() as connection:
        await connection.copy_records_to_table(
            "chunks", records=[row],
            columns=["tenant_id", "collection_id", "document_id", "task_id", "chunk_id",
                     "position", "text", "metadata", "embedding", "dimensions", "live"],
        )  # fmt: skip
        paths = await connection.fetch("SELECT path FROM chunk_numbers WHERE task_id = 'task-odd'")
    assert [r["path"] for r in paths] == [["kept"]]
