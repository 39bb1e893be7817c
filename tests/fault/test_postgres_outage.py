"""PostgreSQL unavailable for a while: callbacks are not acked until stored; nothing is
lost when it returns.

The test owns its PostgreSQL (its own data directory and TCP port) so it can stop it
(`pg_ctl stop -m fast`, which ends every open session) and start it again on the same
port and data while the services keep running: the ingestion API, two
ingestion workers (job and callback consumers, as two replicas would run), the gateway
and an embedding worker, all against the session's redis-server. The stop comes while
callbacks are arriving, with one callback's transaction in flight (held on a lock until
the stop) and with jobs still waiting to be chunked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from embedding.server import EmbeddingServer
from embedding.settings import EmbeddingSettings
from embedding.worker import EmbeddingWorker
from embedpipe.postgres_server import PostgresServer
from ingestion.keys import IngestionKeys
from ingestion.settings import IngestionSettings
from ingestion.worker import run_worker
from tests.support.ingestion_calls import COLLECTIONS, upload_text, wait_task
from tests.support.jobs import SENTENCES
from tests.support.services import ingestion_settings_for, serving_ingestion
from tests.support.tenants import bearer

#: Documents uploaded before the outage (their callbacks arrive during it) and just
#: before it (their jobs are still waiting when the database goes away).
EARLY_DOCUMENTS = 12
LATE_DOCUMENTS = 4
OUTAGE_S = 6.0
WORKERS = ("outage-a", "outage-b")
#: Deliveries of a job before it is failed. An outage lasts longer than this many claim
#: periods: jobs waiting for the database must not use their deliveries up meanwhile.
MAX_DELIVERIES = 2
CLAIM_IDLE_MS = 2000


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[PostgresServer]:
    """A PostgreSQL of this test's alone, which it may stop and start again."""
    postgres = PostgresServer(tmp_path / "pg")
    await asyncio.to_thread(postgres.start)
    try:
        yield postgres
    finally:
        await asyncio.to_thread(postgres.stop)


@contextlib.asynccontextmanager
async def running_workers(settings: IngestionSettings) -> AsyncIterator[list[asyncio.Task[None]]]:
    """The ingestion workers, each a job consumer and a callback consumer."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_worker(_named(settings, name), stop), name=name) for name in WORKERS
    ]
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


def _named(settings: IngestionSettings, name: str) -> IngestionSettings:
    return replace(settings, consumer_name=name)


def document(n: int) -> str:
    """A document of about twenty 32-token chunks, different from every other."""
    paragraphs = [
        f"## Part {p} of document {n}\n\n"
        + " ".join(SENTENCES[(n + p + i) % len(SENTENCES)] for i in range(5))
        for p in range(8)
    ]
    return f"# Document {n}\n\n" + "\n\n".join(paragraphs)


class Held:
    """What the callback queue, the processing lists and the dead-letter list hold."""

    def __init__(self, redis: aioredis.Redis, settings: IngestionSettings) -> None:
        self.redis = redis
        self.queue = settings.callback_queue
        self.keys = IngestionKeys(settings.key_prefix)

    async def counts(self) -> dict[str, int]:
        processing = 0
        for name in WORKERS:
            processing += await self.redis.llen(self.keys.processing(name))
        return {
            "queued": await self.redis.llen(self.queue),
            "processing": processing,
            "dead": await self.redis.llen(self.keys.callbacks_dead_letter),
        }


async def wait_for(connection: asyncpg.Connection, query: str) -> None:
    """Until `query` (which polls another process's writes) returns true."""
    async with asyncio.timeout(30):
        while True:
            if await connection.fetchval(query):
                return
            await asyncio.sleep(0.05)


#: A callback's transaction, blocked on the lock the test holds on the tasks table.
CALLBACK_WAITING = (
    "SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND query LIKE 'SELECT * FROM tasks WHERE tenant_id = $1 AND task_id = $2 FOR UPDATE'"
)


async def test_callbacks_wait_out_a_postgres_outage_and_nothing_is_lost(
    own_postgres: PostgresServer,
    settings: EmbeddingSettings,
    auth_server: EmbeddingServer,
    gateway: str,
    worker: EmbeddingWorker,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    figure: Callable[[str], None],
) -> None:
    caplog.set_level(logging.INFO, logger="ingestion")
    ingestion = ingestion_settings_for(
        own_postgres.url, settings, auth_server, gateway,
        claim_idle_ms=CLAIM_IDLE_MS, max_deliveries=MAX_DELIVERIES,
    )  # fmt: skip
    held = Held(redis, ingestion)
    async with serving_ingestion(ingestion) as api, running_workers(ingestion) as workers:
        async with http.post(
            api + COLLECTIONS,
            json={"collection_id": "outage", "chunk_tokens": 32, "overlap_tokens": 0},
            headers=bearer("tenant-a"),
        ) as r:
            assert r.status == 201, await r.text()
        task_ids = [
            (await upload_text(http, api, "outage", f"doc-{n}", document(n)))["task_id"]
            for n in range(EARLY_DOCUMENTS)
        ]
        observer = await asyncio.wait_for(asyncpg.connect(own_postgres.url), 10)
        blocker = await asyncio.wait_for(asyncpg.connect(own_postgres.url), 10)
        try:
            # Callbacks are arriving: the first vectors are stored.
            await wait_for(observer, "SELECT sum(chunks_embedded) > 0 FROM tasks")
            task_ids += [
                (await upload_text(http, api, "outage", f"late-{n}", document(100 + n)))["task_id"]
                for n in range(LATE_DOCUMENTS)
            ]
            # Stop while a callback's transaction is in flight: a lock holds it until then.
            await blocker.execute("BEGIN; LOCK TABLE tasks IN EXCLUSIVE MODE")
            await wait_for(observer, CALLBACK_WAITING)
            await asyncio.to_thread(own_postgres.stop)
        finally:
            observer.terminate()
            blocker.terminate()  # also releases the lock if the test failed before the stop
        down_at = time.monotonic()
        samples = [await held.counts()]
        while time.monotonic() - down_at < OUTAGE_S:
            await asyncio.sleep(0.25)
            samples.append(await held.counts())
            assert not any(w.done() for w in workers), "an ingestion worker stopped"
        await asyncio.to_thread(own_postgres.start)
        outage_s = time.monotonic() - down_at

        # While the database was down nothing left the queue except into a processing
        # list, where it stayed: the total held only grew, and nothing was dead-lettered.
        totals = [s["queued"] + s["processing"] for s in samples]
        assert all(s["dead"] == 0 for s in samples), samples
        assert totals == sorted(totals), samples
        assert samples[-1]["processing"] >= 1, samples  # the ones being retried
        held_while_down = totals[-1]

        finished = [await wait_task(http, api, task_id) for task_id in task_ids]
        async with asyncio.timeout(30):
            while (counts := await held.counts()) != {"queued": 0, "processing": 0, "dead": 0}:
                assert counts["dead"] == 0, counts
                await asyncio.sleep(0.1)
        assert not any(w.done() for w in workers), "an ingestion worker stopped"

    lost = [
        (t["document_id"], t["status"], t["error_message"], t["chunks_embedded"], t["chunks_total"])
        for t in finished
        if t["status"] != "completed" or t["chunks_embedded"] != t["chunks_total"]
    ]
    figure(
        f"\npostgres outage: documents {len(task_ids)}, callbacks held while down "
        f"{held_while_down}, lost {len(lost)}, dead-lettered {counts['dead']}, "
        f"outage {outage_s:.1f} s"
    )
    assert lost == []
    assert all(t["chunks_total"] > 0 for t in finished), finished
    assert held_while_down > 0, samples
    # Both consumers kept their heartbeat while they waited: neither took the other for
    # dead and replayed its callbacks.
    recovered = [r for r in caplog.records if "recovered callbacks of a dead" in r.getMessage()]
    assert recovered == [], [r.getMessage() for r in recovered]
    applied = [r for r in caplog.records if r.getMessage().startswith("callback applied")]
    assert len(applied) >= held_while_down
