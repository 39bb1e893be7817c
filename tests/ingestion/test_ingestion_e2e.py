"""The ingestion pipeline end to end, everything real: redis-server, PostgreSQL+pgvector, the
embedding server and worker behind the gateway, the ingestion API and worker.

Uploads of every format become searchable; a re-upload makes no embedding request; deleting
a collection leaves nothing behind; and the callback queue shrugs off duplicated, error and
malformed callbacks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, NamedTuple

import aiohttp
import asyncpg
import numpy as np
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from embedding.keys import EmbeddingKeys
from embedding.worker import EmbeddingWorker
from embedpipe.metrics import MetricsSettings
from embedpipe.redis_conn import connect as connect_redis
from embedpipe.redis_server import free_port
from ingestion.db import connect as connect_db
from ingestion.embedding_client import EmbeddingClient
from ingestion.keys import IngestionKeys
from ingestion.settings import IngestionSettings
from ingestion.worker import IngestionWorker, load_tokenizer, run_worker
from tests.support.documents import build_docx, build_pdf
from tests.support.ingestion_calls import (
    AQUARIUM_MD,
    COLLECTIONS,
    DIMENSIONS,
    STATUSES,
    TIMEOUT_S,
    background,
    create_collection,
    embedding_task,
    ingestion_worker_run,
    search_top,
    seed_callback,
    staged_chunk_ids,
    upload,
    wait_task,
    wait_until,
)
from tests.support.tenants import bearer

GENERATE_ROUTE = "/api/v1/embeddings/generate"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


# Four documents on four topics, each with a sentence a paraphrase should find ----------------


def volcano_pdf() -> bytes:
    return build_pdf(
        [
            [
                "Volcanoes",
                "Molten rock called magma collects in a chamber deep under the mountain.",
                "When the pressure grows too high, lava and ash burst out of the crater.",
            ]
        ],
        title="Volcanoes",
    )


def sourdough_docx() -> bytes:
    return build_docx(
        [
            (1, "Sourdough baking"),
            (
                None,
                "Sourdough bread rises slowly because the wild yeast of the starter "
                "ferments the dough overnight.",
            ),
        ],
        title="Sourdough",
    )


CHESS_HTML = b"""<!DOCTYPE html>
<html><head><title>Chess openings</title></head><body>
<h1>Chess openings</h1>
<p>In the opening a chess player brings the knights and bishops towards the centre of the
board and castles the king to safety.</p>
</body></html>
"""


class Doc(NamedTuple):
    document_id: str
    filename: str
    content_type: str
    data: bytes
    #: A paraphrase of the document's sentence, sharing few of its words.
    query: str
    #: A word of the sentence, to see the right text was extracted.
    word: str


DOCUMENTS = [
    Doc(
        "volcanoes", "volcanoes.pdf", "application/pdf", volcano_pdf(),
        "What makes a mountain erupt with molten rock?", "crater",
    ),
    Doc(
        "sourdough", "sourdough.docx", DOCX_TYPE, sourdough_docx(),
        "How does naturally leavened bread get its rise?", "wild yeast",
    ),
    Doc(
        "chess", "chess.html", "text/html", CHESS_HTML,
        "Which pieces should be developed first at the start of a chess game?", "knights",
    ),
    Doc(
        "aquarium", "aquarium.md", "text/markdown", AQUARIUM_MD,
        "How often should I change the water for my pet fish?", "ammonia",
    ),
]  # fmt: skip


# Helpers ----------------------------------------------------------------------------------


async def callbacks_drained(redis: aioredis.Redis, settings: IngestionSettings) -> bool:
    """Whether the callback queue and the consumer's processing list are both empty."""
    keys = IngestionKeys(settings.key_prefix)
    queued = await redis.llen(settings.callback_queue)
    processing = await redis.llen(keys.processing(settings.consumer_name))
    return bool(queued == 0 and processing == 0)


async def generate_requests(http: aiohttp.ClientSession, gateway_url: str) -> float:
    """How many GenerateEmbeddings requests the gateway has answered (any status)."""
    async with http.get(f"{gateway_url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "embedpipe_gateway_requests_total"
        and sample.labels.get("route") == GENERATE_ROUTE
    )


async def dedupe_keys(redis: aioredis.Redis) -> int:
    """Accepted GenerateEmbeddings jobs: the embedding server keeps one dedupe key each."""
    pattern = EmbeddingKeys().dedupe("*")
    return len([key async for key in redis.scan_iter(match=pattern)])


def job_consumer_only(
    settings: IngestionSettings,
) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """The ingestion worker's job consumer without its callback consumer: chunks are sent
    to the embedding service, and its callbacks wait on the queue, unconsumed."""

    async def run(stop: asyncio.Event) -> None:
        pool = await connect_db(settings.database_url)
        redis = connect_redis(settings.redis_url)
        tokenizer = await asyncio.to_thread(load_tokenizer)
        try:
            async with aiohttp.ClientSession() as session:
                client = EmbeddingClient(
                    session, settings.embedding_service_url, settings.service_key
                )
                await IngestionWorker(settings, redis, pool, client, tokenizer).run(stop)
        finally:
            await redis.aclose()
            await pool.close()

    return run


# 1. Every format, live events, search --------------------------------------------------------


async def test_pdf_docx_html_markdown_uploads_complete_live_and_are_searchable(
    ingestion_api: str, ingestion_worker: None, http: aiohttp.ClientSession
) -> None:
    await create_collection(http, ingestion_api, "library")
    statuses: dict[str, list[str]] = {}
    async with http.ws_connect(f"{ingestion_api}/api/v1/ws", headers=bearer("tenant-a")) as ws:
        await ws.send_json({"action": "subscribe", "all": True})
        assert await ws.receive_json(timeout=TIMEOUT_S) == {"type": "subscribed", "all": True}
        for doc in DOCUMENTS:
            accepted = await upload(
                http, ingestion_api, "library", doc.document_id, doc.filename,
                doc.content_type, doc.data,
            )  # fmt: skip
            statuses[accepted["task_id"]] = []

        def finished(seen: list[str]) -> bool:
            return bool(seen) and seen[-1] in ("completed", "failed")

        async with asyncio.timeout(TIMEOUT_S):
            while not all(finished(seen) for seen in statuses.values()):
                event = await ws.receive_json()
                assert event["type"] == "task" and event["task_id"] in statuses, event
                statuses[event["task_id"]].append(event["status"])

    for seen in statuses.values():
        assert list(dict.fromkeys(seen)) == STATUSES, seen
    for doc in DOCUMENTS:
        results = await search_top(http, ingestion_api, "library", doc.query)
        assert results[0]["document_id"] == doc.document_id, (doc.query, results)
        assert doc.word in results[0]["text"]


# 2. Unchanged re-upload ----------------------------------------------------------------------


async def test_unchanged_reupload_makes_no_embedding_request(
    ingestion_api: str,
    ingestion_worker: None,
    ingestion_settings: IngestionSettings,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    gateway_url = ingestion_settings.embedding_service_url
    await create_collection(http, ingestion_api, "geology")
    pdf = volcano_pdf()
    first = await upload(
        http, ingestion_api, "geology", "volcanoes", "v.pdf", "application/pdf", pdf
    )
    assert (await wait_task(http, ingestion_api, first["task_id"]))["status"] == "completed"
    requests_before = await generate_requests(http, gateway_url)
    jobs_before = await dedupe_keys(redis)
    assert requests_before >= 1 and jobs_before >= 1  # the observation sees the first upload

    again = await upload(
        http, ingestion_api, "geology", "volcanoes", "v.pdf", "application/pdf", pdf
    )
    task = await wait_task(http, ingestion_api, again["task_id"])

    assert task["status"] == "unchanged" and task["chunks_total"] == 0
    assert await generate_requests(http, gateway_url) == requests_before
    assert await dedupe_keys(redis) == jobs_before
    async with http.get(
        f"{ingestion_api}{COLLECTIONS}/geology/documents/volcanoes", headers=bearer("tenant-a")
    ) as r:
        document = await r.json()
    assert document["current_task_id"] == first["task_id"]
    assert document["status"] == "completed"


# 3. Deleting a collection ------------------------------------------------------------------


async def test_deleted_collection_leaves_no_chunks_and_is_404(
    ingestion_api: str,
    ingestion_worker: None,
    http: aiohttp.ClientSession,
    db: asyncpg.Connection,
) -> None:
    await create_collection(http, ingestion_api, "fish")
    await create_collection(http, ingestion_api, "kept")
    for collection_id in ("fish", "kept"):
        accepted = await upload(
            http, ingestion_api, collection_id, "aquarium", "a.md", "text/markdown", AQUARIUM_MD
        )
        assert (await wait_task(http, ingestion_api, accepted["task_id"]))["status"] == "completed"
    count = "SELECT count(*) FROM {} WHERE tenant_id = 'tenant-a' AND collection_id = $1"
    assert await db.fetchval(count.format("chunks"), "fish") > 0

    async with http.delete(f"{ingestion_api}{COLLECTIONS}/fish", headers=bearer("tenant-a")) as r:
        assert r.status == 204

    for table in ("chunks", "documents", "tasks"):
        assert await db.fetchval(count.format(table), "fish") == 0, table
    assert await db.fetchval(count.format("chunks"), "kept") > 0  # only that collection went
    base = f"{ingestion_api}{COLLECTIONS}/fish"
    async with http.get(base, headers=bearer("tenant-a")) as r:
        assert r.status == 404
    async with http.get(f"{base}/documents/aquarium", headers=bearer("tenant-a")) as r:
        assert r.status == 404
    async with http.post(
        f"{base}/search", json={"query": "fish tank water"}, headers=bearer("tenant-a")
    ) as r:
        assert r.status == 404
    async with http.delete(base, headers=bearer("tenant-a")) as r:
        assert r.status == 404


# 4. Duplicated callbacks -------------------------------------------------------------------


async def test_duplicated_callbacks_store_one_set_of_vectors(
    ingestion_api: str,
    ingestion_settings: IngestionSettings,
    worker: EmbeddingWorker,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    db: asyncpg.Connection,
) -> None:
    """The embedding worker's real callback is held on the queue (no callback consumer
    yet) and pushed twice more; then the consumer starts and sees it three times."""
    queue = ingestion_settings.callback_queue
    await create_collection(http, ingestion_api, "bread")
    async with background(job_consumer_only(ingestion_settings)):
        accepted = await upload(
            http, ingestion_api, "bread", "sourdough", "s.docx", DOCX_TYPE, sourdough_docx()
        )
        await wait_until(lambda: _has_items(redis, queue))
    raw = await redis.lindex(queue, 0)
    assert isinstance(raw, bytes)
    callback = json.loads(raw)
    assert callback["task_id"] == accepted["task_id"] and callback["status"] == "success"
    await redis.lpush(queue, raw, raw)

    async with background(ingestion_worker_run(ingestion_settings)):
        await wait_until(lambda: callbacks_drained(redis, ingestion_settings))
        task = await wait_task(http, ingestion_api, accepted["task_id"])
        assert task["status"] == "completed"
        chunks_total = len(callback["embeddings"])
        assert task["chunks_total"] == task["chunks_embedded"] == chunks_total
        rows = await db.fetch(
            "SELECT chunk_id, embedding::real[] AS vector, live FROM chunks"
            " WHERE tenant_id = 'tenant-a' AND document_id = 'sourdough'"
        )
        assert len(rows) == chunks_total
        sent = {e["chunk_id"]: e["embedding"] for e in callback["embeddings"]}
        for row in rows:
            assert row["live"]
            np.testing.assert_allclose(row["vector"], sent[row["chunk_id"]], rtol=1e-6)

        # Once more after completion: still nothing changes, not even the task's timestamps.
        await redis.lpush(queue, raw, raw)
        await wait_until(lambda: callbacks_drained(redis, ingestion_settings))
        again = await wait_task(http, ingestion_api, accepted["task_id"])
        assert again == task
        assert await db.fetchval("SELECT count(*) FROM chunks") == chunks_total


async def _has_items(redis: aioredis.Redis, queue: str) -> bool:
    return bool(await redis.llen(queue) > 0)


# 5. Error callbacks --------------------------------------------------------------------------


async def test_error_callback_fails_the_embedding_task_with_its_code_and_message(
    ingestion_api: str,
    worker_without_embedding: None,
    ingestion_settings: IngestionSettings,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    db: asyncpg.Connection,
) -> None:
    task = await embedding_task(http, ingestion_api, "rejected", AQUARIUM_MD.decode())
    assert await staged_chunk_ids(db, task["task_id"])
    message = "the provider refused the input: content policy"
    error = seed_callback(task, "error", error_code="PROVIDER_REJECTED", error_message=message)
    await redis.lpush(ingestion_settings.callback_queue, json.dumps(error))

    failed = await wait_task(http, ingestion_api, task["task_id"])

    assert failed["status"] == "failed"
    assert failed["error_code"] == "PROVIDER_REJECTED"
    assert failed["error_message"] == message
    assert await staged_chunk_ids(db, task["task_id"]) == []  # staged chunks dropped
    async with http.get(
        f"{ingestion_api}{COLLECTIONS}/rejected/documents/doc-1", headers=bearer("tenant-a")
    ) as r:
        assert (await r.json())["status"] == "failed"


# 6. Malformed callbacks ----------------------------------------------------------------------


def malformed_callbacks(task: dict[str, Any]) -> list[bytes]:
    valid_error = seed_callback(task, "error", error_code="X", error_message="x")
    without_task = {k: v for k, v in valid_error.items() if k != "task_id"}
    return [
        b"not json {",
        b"\xff\xfe\x00 not utf-8",
        json.dumps([valid_error]).encode(),  # a JSON array
        json.dumps(without_task).encode(),  # a field missing
        json.dumps({**valid_error, "tenant_id": 42}).encode(),  # a number for a string
        json.dumps({**valid_error, "status": "done"}).encode(),  # an unknown status
        json.dumps(seed_callback(task, "success", embeddings={"c": [1.0]})).encode(),
        json.dumps(
            seed_callback(task, "success", embeddings=[{"chunk_id": "c", "embedding": ["x"]}])
        ).encode(),
        json.dumps("x" * (5 * 1024 * 1024)).encode(),  # a huge string
    ]


async def test_malformed_callbacks_go_to_dead_letter_and_do_not_block_valid_ones(
    ingestion_api: str,
    worker_without_embedding: None,
    ingestion_settings: IngestionSettings,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    db: asyncpg.Connection,
) -> None:
    task = await embedding_task(http, ingestion_api, "poison", AQUARIUM_MD.decode())
    chunk_ids = await staged_chunk_ids(db, task["task_id"])
    vector = [1.0 / DIMENSIONS**0.5] * DIMENSIONS
    valid = seed_callback(
        task,
        "success",
        dimensions=DIMENSIONS,
        embeddings=[{"chunk_id": c, "embedding": vector} for c in chunk_ids],
        usage={"prompt_tokens": 10, "total_tokens": 10},
    )
    malformed = malformed_callbacks(task)
    # LPUSH, consumed from the right: every malformed one comes before the valid one.
    await redis.lpush(ingestion_settings.callback_queue, *malformed, json.dumps(valid))

    completed = await wait_task(http, ingestion_api, task["task_id"])
    await wait_until(lambda: callbacks_drained(redis, ingestion_settings))

    assert completed["status"] == "completed"
    assert completed["chunks_embedded"] == len(chunk_ids)
    dead = await redis.lrange(IngestionKeys().callbacks_dead_letter, 0, -1)
    assert sorted(dead) == sorted(malformed)


@pytest.mark.parametrize("poison", ["nan-in-embedding", "nul-in-error-code", "a-check-refuses"])
async def test_callbacks_the_database_refuses_are_dead_lettered_not_fatal(
    poison: str,
    ingestion_api: str,
    ingestion_settings: IngestionSettings,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    db: asyncpg.Connection,
) -> None:
    """A callback that cannot be stored must not stop the consumer: NaN (not JSON) and NUL
    (PostgreSQL stores none) are refused by the parser as malformed; a value a constraint
    of the database refuses is dead-lettered. The worker's metrics count each once."""
    metrics_port = free_port()
    settings = replace(ingestion_settings, metrics=MetricsSettings(port=metrics_port))
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(settings, stop))
    try:
        task = await embedding_task(http, ingestion_api, "refused", AQUARIUM_MD.decode())
        chunk_ids = await staged_chunk_ids(db, task["task_id"])
        if poison == "nan-in-embedding":
            bad = seed_callback(
                task, "success",
                embeddings=[{"chunk_id": c, "embedding": [float("nan")] * DIMENSIONS}
                            for c in chunk_ids],
            )  # fmt: skip
        elif poison == "nul-in-error-code":
            bad = seed_callback(task, "error", error_code="BAD\u0000CODE", error_message="m")
        else:
            await db.execute(
                "ALTER TABLE tasks ADD CONSTRAINT no_blocked_code"
                " CHECK (error_code IS DISTINCT FROM 'BLOCKED') NOT VALID"
            )
            bad = seed_callback(task, "error", error_code="BLOCKED", error_message="m")
        message = "the provider refused the input"
        valid = seed_callback(task, "error", error_code="PROVIDER_REJECTED", error_message=message)
        await redis.lpush(ingestion_settings.callback_queue, json.dumps(bad), json.dumps(valid))

        async def settled() -> bool:
            return running.done() or await callbacks_drained(redis, ingestion_settings)

        await wait_until(settled)
        assert not running.done(), "the ingestion worker stopped"
        dead = await redis.lrange(IngestionKeys().callbacks_dead_letter, 0, -1)
        assert dead == [json.dumps(bad).encode()]
        failed = await wait_task(http, ingestion_api, task["task_id"])
        assert failed["error_code"] == "PROVIDER_REJECTED"
        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
            text = await r.text()
        outcomes = {
            sample.labels["outcome"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "embedpipe_callbacks_total"
        }
        refused_as = "dead_lettered" if poison == "a-check-refuses" else "malformed"
        assert outcomes[refused_as] == 1 and outcomes["error"] == 1
        assert sum(outcomes.values()) == 2
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await db.execute("ALTER TABLE tasks DROP CONSTRAINT IF EXISTS no_blocked_code")


async def test_vectors_of_the_wrong_size_fail_the_task_instead_of_hiding_its_chunks(
    ingestion_api: str,
    ingestion_settings: IngestionSettings,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    db: asyncpg.Connection,
) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(ingestion_settings, stop))
    try:
        task = await embedding_task(http, ingestion_api, "sizes", AQUARIUM_MD.decode())
        chunk_ids = await staged_chunk_ids(db, task["task_id"])
        short = seed_callback(
            task,
            "success",
            embeddings=[{"chunk_id": c, "embedding": [0.5, 0.5]} for c in chunk_ids],
        )
        await redis.lpush(ingestion_settings.callback_queue, json.dumps(short))
        failed = await wait_task(http, ingestion_api, task["task_id"])
        assert failed["status"] == "failed" and failed["error_code"] == "EMBEDDING_FAILED"
        assert "384" in failed["error_message"]
        assert await db.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL") == 0
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
