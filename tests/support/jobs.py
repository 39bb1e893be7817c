"""Embedding jobs as the tests send them (GenerateEmbeddingsRequest) and their callbacks as
they read them off the callback queue."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from embedpipe.embedding.v1 import embedding_service_pb2 as pb

CALLBACK_QUEUE = "ingestion:callbacks:embedding"


SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "Interest rates rose sharply after the central bank meeting.",
    "Fresh basil and tomatoes make a simple summer pasta.",
    "The rocket reached orbit eleven minutes after launch.",
    "Volunteers planted three hundred trees along the river.",
    "The orchestra rehearsed the symphony late into the night.",
]


def seed_request(
    *,
    texts: list[str] | None = None,
    task_id: str = "task-1",
    document_id: str = "doc-1",
    tenant_id: str = "tenant-a",
    callback_queue: str = CALLBACK_QUEUE,
    model: str = "",
) -> pb.GenerateEmbeddingsRequest:
    """A GenerateEmbeddingsRequest shaped like the seed's example."""
    texts = SENTENCES[:3] if texts is None else texts
    request = pb.GenerateEmbeddingsRequest(
        document_id=document_id,
        collection_id="col-1",
        tenant_id=tenant_id,
        model=model,
        task_id=task_id,
        callback_queue=callback_queue,
    )
    for i, text in enumerate(texts):
        chunk = request.chunks.add(chunk_id=f"{document_id}:{i}", text=text)
        chunk.metadata.update({"position": i})
    return request


async def pop_callbacks(
    redis: aioredis.Redis, count: int, *, queue: str = CALLBACK_QUEUE, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """Wait for `count` callbacks on `queue` (oldest first) and decode them."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while len(found) < count:
            item = await redis.brpop([queue], timeout=1)
            if item is not None:
                found.append(json.loads(item[1]))
    return found
