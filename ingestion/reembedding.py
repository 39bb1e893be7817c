"""The ingestion worker's part of a re-embed (ReembedCollection): it runs the re-embed's
steps as jobs of the job stream (so a worker killed mid-step leaves the step to another),
sends the chunks still without a vector of the new model, and once the collection has
switched, sends again the uploads the switch reset. A sweep finds re-embeds whose next
step was never queued."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

import redis.asyncio as aioredis

from embedpipe.task_status import TaskStatus
from ingestion import reembed_store, store
from ingestion.db import Pool
from ingestion.embedding_client import EmbeddingClient
from ingestion.errors import IngestionError
from ingestion.events import publish
from ingestion.jobs import enqueue_reembed_step
from ingestion.keys import IngestionKeys
from ingestion.settings import IngestionSettings

log = logging.getLogger(__name__)

#: Chunks read from the store at a time while sending.
PAGE = 1000
#: Seconds between sweeps for re-embeds whose next step was not queued.
SWEEP_S = 5.0


class Reembedding:
    """Runs re-embed steps for one worker."""

    def __init__(
        self,
        settings: IngestionSettings,
        pool: Pool,
        redis: aioredis.Redis,
        keys: IngestionKeys,
        client: EmbeddingClient,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.client = client

    async def run_step(self, tenant_id: str, task_id: str) -> None:
        """One step of the re-embed: copy, then send or switch (reembed_store.step)."""
        result = await reembed_store.step(self.pool, tenant_id, task_id)
        task = result.task
        if task is None:
            log.warning("re-embed step for an unknown task dropped task_id=%s", task_id)
            return
        if result.to_send or result.switched:
            await publish(self.redis, self.keys, task)
        if result.to_send:
            sent = await self.send_unembedded(task)
            log.info("re-embed chunks sent task_id=%s chunks=%d", task_id, sent)
        if result.switched:
            log.info(
                "collection switched to its new model collection_id=%s model=%s chunks=%d"
                " task_id=%s",
                task["collection_id"], task["model"], task["chunks_total"], task_id,
            )  # fmt: skip
        if task["status"] == TaskStatus.COMPLETED:
            # Now, or again if this step is a redelivery of the one that switched.
            await self._send_reset_uploads(tenant_id, task["collection_id"])

    async def _send_reset_uploads(self, tenant_id: str, collection_id: str) -> None:
        for upload_id in await reembed_store.unstamped_uploads(self.pool, tenant_id, collection_id):
            upload = await store.embedding_model(self.pool, tenant_id, upload_id)
            if upload is None:
                continue
            await publish(self.redis, self.keys, upload)
            try:
                sent = await self.send_unembedded(upload)
            except IngestionError as exc:
                if exc.transient:
                    raise
                failed = await store.fail_task(
                    self.pool, tenant_id, upload_id,
                    error_code=exc.code.value, error_message=exc.message,
                )  # fmt: skip
                if failed is not None:
                    await publish(self.redis, self.keys, failed)
                continue
            log.info("upload sent again for the new model task_id=%s chunks=%d", upload_id, sent)

    async def send_unembedded(self, task: dict[str, Any]) -> int:
        """Send the task's chunks that have no vector yet, with its model, in bounded
        requests of one document's chunks each; how many were sent."""
        sent = 0
        after = ("", "")
        while rows := await reembed_store.unembedded_chunks(
            self.pool, task["tenant_id"], task["task_id"], after=after, limit=PAGE
        ):
            for document_id, of_document in itertools.groupby(rows, lambda r: r["document_id"]):
                chunks = [
                    {"chunk_id": r["chunk_id"], "text": r["text"], "metadata": r["metadata"]}
                    for r in of_document
                ]
                await self.client.send_document(
                    task, document_id, chunks,
                    per_request=self.settings.request_chunks,
                    callback_queue=self.settings.callback_queue,
                )  # fmt: skip
                sent += len(chunks)
            after = (rows[-1]["document_id"], rows[-1]["chunk_id"])
        return sent


async def sweep(
    pool: Pool, redis: aioredis.Redis, keys: IngestionKeys, stop: asyncio.Event
) -> None:
    """Until stopped: queue the next step of every re-embed that waits for one."""
    while not stop.is_set():
        try:
            for tenant_id, task_id in await reembed_store.waiting_to_switch(pool):
                await enqueue_reembed_step(redis, keys, tenant_id, task_id)
                log.info("re-embed step queued by the sweep task_id=%s", task_id)
        except Exception as exc:  # the database or Redis away: the next sweep tries again
            log.warning("re-embed sweep failed error=%s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SWEEP_S)
