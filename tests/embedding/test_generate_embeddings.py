"""GenerateEmbeddings end to end: gRPC → Redis stream → worker → seed-shaped JSON callback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import jsonschema
import numpy as np
import redis.asyncio as aioredis
from google.protobuf import json_format

from embedding.keys import EmbeddingKeys
from embedding.providers.local import LocalOnnxProvider
from embedding.worker import EmbeddingWorker
from embedpipe.embedding.v1 import callback_pb2
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.embedding.v1 import queue_service_pb2 as queue_pb
from embedpipe.embedding.v1 import queue_service_pb2_grpc as queue_grpc
from tests.support.jobs import CALLBACK_QUEUE, SENTENCES, pop_callbacks, seed_request
from tests.support.processes import REPO
from tests.support.services import WorkerFactory

SEED_SUCCESS_FIELDS = {
    "task_id",
    "document_id",
    "collection_id",
    "tenant_id",
    "status",
    "embeddings",
}
EXTRA_FIELDS = {"job_id", "model", "dimensions", "usage", "pushed_at"}
SCHEMA: dict[str, Any] = json.loads((REPO / "docs" / "callback.schema.json").read_text())


async def test_a_job_yields_one_seed_shaped_callback_with_a_vector_per_chunk(
    stub: pb_grpc.EmbeddingServiceAsyncStub,
    worker: EmbeddingWorker,
    redis: aioredis.Redis,
    local_provider: LocalOnnxProvider,
) -> None:
    request = seed_request(texts=SENTENCES[:4])
    reply = await stub.GenerateEmbeddings(request)
    assert reply.job_id and reply.task_id == "task-1" and reply.chunk_count == 4
    assert reply.accepted_time.seconds > 0 and not reply.deduplicated

    (callback,) = await pop_callbacks(redis, 1)

    assert set(callback) == SEED_SUCCESS_FIELDS | EXTRA_FIELDS
    assert callback["status"] == "success"
    assert (callback["task_id"], callback["document_id"], callback["collection_id"]) == (
        "task-1",
        "doc-1",
        "col-1",
    )
    assert callback["tenant_id"] == "tenant-a" and callback["job_id"] == reply.job_id
    assert [e["chunk_id"] for e in callback["embeddings"]] == [c.chunk_id for c in request.chunks]
    assert all(len(e["embedding"]) == 384 for e in callback["embeddings"])
    jsonschema.validate(callback, SCHEMA)
    # The proto documents the JSON exactly: it parses with no unknown field.
    json_format.ParseDict(callback, callback_pb2.EmbeddingCallback())

    direct = (await local_provider.embed(SENTENCES[:4])).vectors
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    got = np.array([e["embedding"] for e in callback["embeddings"]])
    assert np.allclose((got * direct).sum(axis=1), 1.0, atol=1e-3)
    assert await redis.llen(CALLBACK_QUEUE) == 0


async def test_the_same_request_twice_is_one_job_and_one_callback(
    stub: pb_grpc.EmbeddingServiceAsyncStub, worker: EmbeddingWorker, redis: aioredis.Redis
) -> None:
    first = await stub.GenerateEmbeddings(seed_request())
    second = await stub.GenerateEmbeddings(seed_request())
    assert second.job_id == first.job_id and second.deduplicated
    assert second.accepted_time == first.accepted_time

    (callback,) = await pop_callbacks(redis, 1)
    assert callback["job_id"] == first.job_id
    # A later retry of the finished request still finds the same job and embeds nothing.
    third = await stub.GenerateEmbeddings(seed_request())
    assert third.job_id == first.job_id
    assert await redis.brpop([CALLBACK_QUEUE], timeout=1) is None


async def test_calls_at_once_are_each_accepted_once_and_retries_among_them_find_their_job(
    stub: pb_grpc.EmbeddingServiceAsyncStub, redis: aioredis.Redis
) -> None:
    """Calls in flight together are accepted in groups (embedding/jobs.py); each job is
    still stored once, and a retry sent alongside its original gets the same job."""
    tasks = [f"task-{n}" for n in range(30)] + [f"task-{n}" for n in range(0, 30, 3)]
    replies = await asyncio.gather(
        *(stub.GenerateEmbeddings(seed_request(task_id=task)) for task in tasks)
    )
    job_of: dict[str, set[str]] = {}
    for task, reply in zip(tasks, replies, strict=True):
        assert reply.task_id == task
        job_of.setdefault(task, set()).add(reply.job_id)
    assert all(len(jobs) == 1 for jobs in job_of.values())
    assert len({job for jobs in job_of.values() for job in jobs}) == 30
    assert sum(reply.deduplicated for reply in replies) == 10
    assert await redis.xlen(EmbeddingKeys().jobs) == 30


async def test_parts_of_one_document_under_one_task_are_separate_jobs(
    stub: pb_grpc.EmbeddingServiceAsyncStub, worker: EmbeddingWorker, redis: aioredis.Redis
) -> None:
    part1 = seed_request(texts=SENTENCES[:2])
    part2 = seed_request(texts=SENTENCES[2:4])
    for i, chunk in enumerate(part2.chunks):
        chunk.chunk_id = f"doc-1:{i + 2}"
    a = await stub.GenerateEmbeddings(part1)
    b = await stub.GenerateEmbeddings(part2)
    assert a.job_id != b.job_id
    callbacks = await pop_callbacks(redis, 2)
    ids = sorted(e["chunk_id"] for c in callbacks for e in c["embeddings"])
    assert ids == ["doc-1:0", "doc-1:1", "doc-1:2", "doc-1:3"]


async def test_jobs_wait_in_redis_until_a_worker_comes(
    stub: pb_grpc.EmbeddingServiceAsyncStub, redis: aioredis.Redis, worker_factory: WorkerFactory
) -> None:
    for n in range(3):
        await stub.GenerateEmbeddings(seed_request(task_id=f"task-{n}"))
    assert await redis.xlen(EmbeddingKeys().jobs) == 3
    async with worker_factory():
        callbacks = await pop_callbacks(redis, 3)
    assert sorted(c["task_id"] for c in callbacks) == ["task-0", "task-1", "task-2"]
    # Finished jobs are acknowledged and deleted: the stream does not grow without bound.
    assert await redis.xlen(EmbeddingKeys().jobs) == 0


async def test_queue_stats_count_the_jobs_not_yet_finished(
    channel: grpc.aio.Channel,
    stub: pb_grpc.EmbeddingServiceAsyncStub,
    worker_factory: WorkerFactory,
    redis: aioredis.Redis,
) -> None:
    queue = queue_grpc.QueueServiceStub(channel)
    empty = await queue.GetQueueStats(queue_pb.GetQueueStatsRequest())
    assert (empty.jobs_queued, empty.jobs_in_progress, empty.oldest_job_age_seconds) == (0, 0, 0)
    for n in range(3):
        await stub.GenerateEmbeddings(seed_request(task_id=f"task-{n}"))
    await asyncio.sleep(0.2)
    waiting = await queue.GetQueueStats(queue_pb.GetQueueStatsRequest())
    assert (waiting.jobs_queued, waiting.jobs_in_progress) == (3, 0)
    assert 0.2 <= waiting.oldest_job_age_seconds < 30
    async with worker_factory():
        await pop_callbacks(redis, 3)
    done = await queue.GetQueueStats(queue_pb.GetQueueStatsRequest())
    assert (done.jobs_queued, done.jobs_in_progress, done.jobs_dead_lettered) == (0, 0, 0)
