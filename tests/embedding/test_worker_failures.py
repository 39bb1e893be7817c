"""Workers die; jobs do not: reclaim after SIGKILL, dead-letter for poison jobs."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from embedding.jobs import JobQueue
from embedding.keys import WORKER_GROUP, EmbeddingKeys
from embedding.settings import EmbeddingSettings
from tests.support.jobs import CALLBACK_QUEUE, pop_callbacks, seed_request
from tests.support.poison_worker import POISON
from tests.support.processes import start_child
from tests.support.services import child_env

WORDS = ["river", "stone", "cloud", "market", "engine", "garden", "letter", "window", "harbor"]


def _long_texts(count: int, words: int = 40) -> list[str]:
    rng = random.Random(7)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(count)]


async def _pending_by_consumer(redis: aioredis.Redis, consumer: str) -> int:
    summary = await redis.xpending(EmbeddingKeys().jobs, WORKER_GROUP)
    return sum(int(c["pending"]) for c in summary["consumers"] if c["name"] == consumer.encode())


async def test_a_job_of_a_killed_worker_is_delivered_once_by_another(
    settings: EmbeddingSettings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    queue = JobQueue(redis, EmbeddingKeys(), dedupe_ttl_s=3600)
    await queue.ensure_group()
    # About 60,000 tokens: seconds of embedding even where the model is fast (160 texts of
    # 40 words were done within the 0.3 s below on a CPU with native bf16).
    request = seed_request(texts=_long_texts(240, words=200), task_id="big")
    accepted = await queue.enqueue(request)

    doomed = start_child(
        ["-m", "embedding", "worker"],
        child_env(settings, EMBEDDING_WORKER_NAME="doomed"),
        tmp_path / "doomed.log",
    )
    try:
        async with asyncio.timeout(60):
            while await _pending_by_consumer(redis, "doomed") == 0:  # noqa: ASYNC110 (polling Redis)
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # it is embedding now
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    finally:
        doomed.kill()
    assert await redis.llen(CALLBACK_QUEUE) == 0

    rescuer = start_child(
        ["-m", "embedding", "worker"],
        child_env(settings, EMBEDDING_WORKER_NAME="rescuer"),
        tmp_path / "rescuer.log",
    )
    try:
        (callback,) = await pop_callbacks(redis, 1, timeout_s=90)
        assert callback["status"] == "success" and callback["job_id"] == accepted.job_id
        assert [e["chunk_id"] for e in callback["embeddings"]] == [
            c.chunk_id for c in request.chunks
        ]
        # Once: nothing else arrives, and the job is gone from the stream.
        assert await redis.brpop([CALLBACK_QUEUE], timeout=2) is None
        assert await redis.xlen(EmbeddingKeys().jobs) == 0
    finally:
        rescuer.terminate()
        assert rescuer.wait(15) == 0
    assert "claimed stale entries" in (tmp_path / "rescuer.log").read_text()


async def test_a_poison_job_ends_in_the_dead_letter_stream_with_an_error_callback(
    settings: EmbeddingSettings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    keys = EmbeddingKeys()
    queue = JobQueue(redis, keys, dedupe_ttl_s=3600)
    await queue.ensure_group()
    poison = await queue.enqueue(seed_request(texts=[f"{POISON} pill"], task_id="poison"))
    healthy = await queue.enqueue(seed_request(texts=["a healthy sentence"], task_id="healthy"))
    env = child_env(settings, EMBEDDING_MAX_DELIVERIES="2", EMBEDDING_CLAIM_IDLE_MS="500")

    callbacks: dict[str, dict[str, object]] = {}
    crashes = 0
    async with asyncio.timeout(100):
        while len(callbacks) < 2:
            worker = start_child(
                ["-m", "tests.support.poison_worker"], env, tmp_path / "poison.log"
            )
            try:
                while worker.poll() is None and len(callbacks) < 2:
                    item = await redis.brpop([CALLBACK_QUEUE], timeout=1)
                    if item is not None:
                        body = json.loads(item[1])
                        callbacks[str(body["task_id"])] = body
            finally:
                if worker.poll() is None:
                    worker.terminate()
                    worker.wait(15)
                elif worker.returncode == 137:
                    crashes += 1

    assert crashes == 2
    assert callbacks["poison"]["status"] == "error"
    assert callbacks["poison"]["error_code"] == "MAX_DELIVERIES_EXCEEDED"
    assert callbacks["poison"]["job_id"] == poison.job_id
    assert callbacks["healthy"]["status"] == "success"
    assert callbacks["healthy"]["job_id"] == healthy.job_id

    entries: Any = await redis.xrange(keys.dead_letter)
    ((_entry_id, fields),) = entries
    assert fields[b"job_id"].decode() == poison.job_id
    assert fields[b"reason"] == b"MAX_DELIVERIES_EXCEEDED"
    assert int(fields[b"deliveries"]) == 3
    assert await redis.xlen(keys.jobs) == 0
