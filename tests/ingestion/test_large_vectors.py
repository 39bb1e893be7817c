"""Vectors over pgvector's 2,000-dimension index limit (OpenAI's text-embedding-3-large
gives 3,072) are stored as they come and indexed as halfvec: search goes through the
index and finds the nearest chunks; a whole ingest on such a model, through an
OpenAI-compatible stand-in, stores and searches them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import numpy as np
import pytest

from embedding.providers.openai_api import OpenAIProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import EmbeddingServer
from embedding.settings import EmbeddingSettings, ModelSpec
from embedding.worker import EmbeddingWorker
from ingestion import store
from ingestion.chunk_filter import ChunkFilter
from ingestion.db import Pool, connect
from tests.support.ingestion_calls import COLLECTIONS, wait_task
from tests.support.openai_standin import API_KEY, running_standin, standin_vector
from tests.support.services import running_worker, serving_models
from tests.support.tenants import bearer

DIMENSIONS = 3072
LARGE = "text-embedding-3-large"
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
        loading, "tenant-a", "large", model=LARGE, dimensions=DIMENSIONS,
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
    assert await store.embedding_model(loading, "tenant-a", "task-1") is not None
    stored = await store.store_embeddings(
        loading,
        "tenant-a",
        "task-1",
        [(f"c{i}", list(v)) for i, v in enumerate(vectors)],
        model=LARGE,
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
            searching, "tenant-a", "large", list(query), model=LARGE, limit=10,
            chunk_filter=ChunkFilter(),
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


# --- the whole path, on a stand-in of text-embedding-3-large -------------------------------


@pytest.fixture
async def large_model() -> AsyncIterator[OpenAIProvider]:
    async with running_standin(default_dimensions=DIMENSIONS) as standin:
        provider = OpenAIProvider(
            ModelSpec(name=LARGE, provider="openai", dimensions=DIMENSIONS,
                      base_url=standin.base_url, api_key=API_KEY)
        )  # fmt: skip
        await provider.load()
        yield provider
        await provider.close()


# The embedding server and worker of the usual test stack, serving the large model.
@pytest.fixture
async def auth_server(
    auth_settings: EmbeddingSettings, large_model: OpenAIProvider, redis: object
) -> AsyncIterator[EmbeddingServer]:
    registry = ProviderRegistry({LARGE: large_model}, LARGE)
    async with serving_models(auth_settings, registry) as (server, _):
        yield server


@pytest.fixture
async def worker(
    settings: EmbeddingSettings, large_model: OpenAIProvider, redis: object
) -> AsyncIterator[EmbeddingWorker]:
    async with running_worker(settings, ProviderRegistry({LARGE: large_model}, LARGE)) as w:
        yield w


async def test_an_ingest_on_a_3072_dimension_model_stores_and_searches_its_vectors(
    ingestion_api: str, ingestion_worker: None, http: aiohttp.ClientSession, database_url: str
) -> None:
    body = {"collection_id": "large", "model": LARGE, "chunk_tokens": 16, "overlap_tokens": 0}
    async with http.post(ingestion_api + COLLECTIONS, json=body, headers=bearer("tenant-a")) as r:
        assert r.status == 201, await r.text()
        assert (await r.json())["dimensions"] == DIMENSIONS
    paragraphs = [f"Paragraph {i}: the {word} of the report." for i, word in
                  enumerate(["summary", "method", "results", "limits", "outlook"])]  # fmt: skip
    upload = {"document_id": "report", "text": "\n\n".join(paragraphs)}
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/large/documents", json=upload, headers=bearer("tenant-a")
    ) as r:
        task = await wait_task(http, ingestion_api, (await r.json())["task_id"])
    assert task["status"] == "completed", task
    search = {"query": "anything", "mode": "SEARCH_MODE_VECTOR", "top_k": 3}
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/large/search", json=search, headers=bearer("tenant-a")
    ) as r:
        assert r.status == 200, await r.text()
        results = (await r.json())["results"]
    # The stand-in's vectors are a function of the text: the order is cosine's.
    query = standin_vector("anything", DIMENSIONS)
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT chunk_id, text, vector_dims(embedding) AS size FROM chunks"
            " WHERE collection_id = 'large' AND live"
        )
        index = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", f"chunks_hnsw_{DIMENSIONS}"
        )
    finally:
        await connection.close()
    assert len(rows) >= 4 and all(row["size"] == DIMENSIONS for row in rows)
    assert "halfvec(3072)" in index
    expected = sorted(rows, key=lambda row: -float(standin_vector(row["text"], DIMENSIONS) @ query))
    assert [r["chunk_id"] for r in results] == [row["chunk_id"] for row in expected[:3]]
