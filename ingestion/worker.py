"""The ingestion worker: extracted documents → chunks → embedding requests.

Jobs come from the `ingestion:jobs` stream with the same at-least-once discipline as the
embedding worker (consumer group, XAUTOCLAIM after a silent consumer, dead-letter after
too many deliveries). Re-running a job is harmless: chunk rows are inserted once, and the
Embedding Service deduplicates a repeated request. The same process also consumes the
callbacks (`ingestion/callbacks.py`) that finish the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiohttp
import redis.asyncio as aioredis
from opentelemetry.trace import SpanKind
from tokenizers import Tokenizer

from embedpipe import bundled_model, tracing
from embedpipe.metrics import ProcessMetrics, serving_metrics
from embedpipe.redis_conn import RETRYABLE_ERRORS
from embedpipe.streams import StreamConsumer, StreamEntry
from embedpipe.task_status import TaskStatus
from ingestion import store
from ingestion.chunking import Chunker
from ingestion.db import DATABASE_UNAVAILABLE, Pool, database_unavailable
from ingestion.embedding_client import EmbeddingClient
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.events import publish
from ingestion.jobs import REEMBED_STEP, decode_doc, job_fields
from ingestion.keys import WORKER_GROUP, IngestionKeys
from ingestion.metrics import WorkerMetrics
from ingestion.reembedding import Reembedding
from ingestion.settings import IngestionSettings

log = logging.getLogger(__name__)

DATABASE_RETRY_S = 1.0


def load_tokenizer() -> Tokenizer:
    """The tokenizer chunk sizes are measured with: the bundled local model's.

    It is exact for that model; for others (e.g. OpenAI's, whose vocabulary cannot be
    loaded offline) it is a close stand-in, and their windows are far larger anyway.
    """
    return Tokenizer.from_file(str(bundled_model.tokenizer_path()))


class IngestionWorker:
    """One consumer of the ingestion job stream."""

    def __init__(
        self,
        settings: IngestionSettings,
        redis: aioredis.Redis,
        pool: Pool,
        client: EmbeddingClient,
        tokenizer: Tokenizer,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.pool = pool
        self.client = client
        self.tokenizer = tokenizer
        self.metrics = metrics or WorkerMetrics(ProcessMetrics())
        self.keys = IngestionKeys(settings.key_prefix)
        self.reembedding = Reembedding(settings, pool, redis, self.keys, client)
        self._stop = asyncio.Event()
        self.consumer = StreamConsumer(
            redis,
            stream=self.keys.jobs,
            group=WORKER_GROUP,
            consumer=settings.consumer_name,
            claim_idle_ms=settings.claim_idle_ms,
            # One at a time: only the entry in hand is kept alive while it is worked on.
            read_count=1,
            block_ms=1000,
        )

    async def run(self, stop: asyncio.Event) -> None:
        log.info("ingestion worker started consumer=%s", self.consumer.consumer)
        self._stop = stop
        await self.consumer.consume(
            stop, self._process_all, claim_every_s=1.0, retry_on=DATABASE_UNAVAILABLE
        )
        log.info("ingestion worker stopped consumer=%s", self.consumer.consumer)

    async def _process_all(self, entries: list[StreamEntry]) -> None:
        for entry in entries:
            async with self.consumer.keep_alive([entry.entry_id]):
                await self._process_waiting_for_the_database(entry)

    async def _process_waiting_for_the_database(self, entry: StreamEntry) -> None:
        """`process`, retried in place while the database is unavailable.

        Left for redelivery instead, the job would be claimed again after every
        INGESTION_CLAIM_IDLE_MS, each claim counting as a delivery: an outage longer than
        INGESTION_MAX_DELIVERIES claim periods would fail it. Kept alive here it is
        delivered once; on a stop it stays pending and comes back.
        """
        while True:
            try:
                await self.process(entry)
                return
            except Exception as exc:
                if not database_unavailable(exc) or self._stop.is_set():
                    raise
                log.warning(
                    "database unavailable, job kept; retrying in %ss entry_id=%s error=%s",
                    DATABASE_RETRY_S, entry.entry_id, exc,
                )  # fmt: skip
                await asyncio.sleep(DATABASE_RETRY_S)

    async def _finish(self, entry: StreamEntry) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.jobs, WORKER_GROUP, entry.entry_id)
            pipe.xdel(self.keys.jobs, entry.entry_id)
            await pipe.execute()

    async def process(self, entry: StreamEntry) -> None:
        """Chunk a document and send its chunks; the callbacks finish the task."""
        try:
            fields = job_fields(entry)
            tenant, task_id = fields["tenant_id"], fields["task_id"]
        except (KeyError, UnicodeDecodeError):
            log.error("unreadable ingestion job dropped entry_id=%s", entry.entry_id)
            await self.redis.xadd(self.keys.dead_letter, dict(entry.fields.items()))
            await self._finish(entry)
            return
        if entry.deliveries > self.settings.max_deliveries:
            await self._fail(
                tenant, task_id, IngestionErrorCode.UNAVAILABLE,
                f"gave up after {entry.deliveries} deliveries",
            )  # fmt: skip
            await self.redis.xadd(self.keys.dead_letter, dict(entry.fields.items()))
            await self._finish(entry)
            return
        try:
            if fields.get("kind") == REEMBED_STEP:
                await self.reembedding.run_step(tenant, task_id)
            else:
                with tracing.span(
                    "ingest document",
                    parent=fields.get(tracing.TRACEPARENT),
                    kind=SpanKind.CONSUMER,
                    attributes={"task_id": task_id, "deliveries": entry.deliveries},
                ):
                    await self._ingest(fields, entry.fields[b"doc"])
        except IngestionError as exc:
            if exc.transient:
                # Left unacknowledged: redelivered after INGESTION_CLAIM_IDLE_MS, and
                # failed only after INGESTION_MAX_DELIVERIES.
                log.warning("job kept for a retry task_id=%s error=%s", task_id, exc.message)
                return
            await self._fail(tenant, task_id, exc.code, exc.message)
        except Exception as exc:
            if isinstance(exc, RETRYABLE_ERRORS) or database_unavailable(exc):
                raise  # an outage: waited out with the job in hand
            log.exception("job left for redelivery task_id=%s", task_id)
            return
        await self._finish(entry)

    async def _fail(self, tenant: str, task_id: str, code: str, message: str) -> None:
        failed = await store.fail_task(
            self.pool, tenant, task_id, error_code=str(code), error_message=message
        )
        if failed is not None:
            await publish(self.redis, self.keys, failed)
            log.warning("task failed task_id=%s code=%s error=%s", task_id, code, message)

    async def _ingest(self, fields: dict[str, str], raw_doc: bytes) -> None:
        tenant, task_id = fields["tenant_id"], fields["task_id"]
        task = await store.get_task(self.pool, tenant, task_id)
        if task is None or TaskStatus(task["status"]).final:
            return
        collection = await store.get_collection(self.pool, tenant, fields["collection_id"])
        if collection is None:
            raise IngestionError(IngestionErrorCode.NOT_FOUND, "the collection was deleted")
        digest = fields["content_hash"]
        current = await store.current_content_hash(
            self.pool, tenant, fields["collection_id"], fields["document_id"]
        )
        if current == digest:
            unchanged = await store.finish_unchanged(self.pool, tenant, task_id)
            if unchanged is not None:
                await publish(self.redis, self.keys, unchanged)
                log.info("document unchanged task_id=%s", task_id)
            return
        chunking = await store.set_task_status(self.pool, tenant, task_id, TaskStatus.CHUNKING)
        if chunking is not None:
            await publish(self.redis, self.keys, chunking)
        chunker = Chunker(self.tokenizer, collection["chunk_tokens"], collection["overlap_tokens"])
        doc = decode_doc(raw_doc)
        with tracing.span("chunk") as span:
            chunks = await asyncio.to_thread(chunker.chunk, doc, fields["document_id"])
            if span is not None:
                span.set_attribute("chunks", len(chunks))
        if not chunks:
            raise IngestionError(IngestionErrorCode.UNPROCESSABLE, "the document has no text")
        extra = json.loads(fields.get("metadata", "{}"))
        staged = [
            store.StagedChunk(c.chunk_id, c.position, c.text, {**extra, **c.metadata})
            for c in chunks
        ]
        await store.stage_chunks(self.pool, task, staged, digest)
        # The model now: a re-embed may have switched the collection since it was read.
        embedding = await store.embedding_model(self.pool, tenant, task_id)
        if embedding is None:
            return  # ended meanwhile (cancelled, its document deleted)
        await publish(self.redis, self.keys, embedding)
        requests = await self.client.send_document(
            embedding,
            fields["document_id"],
            [{"chunk_id": s.chunk_id, "text": s.text, "metadata": s.metadata} for s in staged],
            per_request=self.settings.request_chunks,
            callback_queue=self.settings.callback_queue,
        )
        self.metrics.documents.inc()
        self.metrics.chunks_sent.inc(len(staged))
        log.info("chunks sent task_id=%s chunks=%d requests=%d", task_id, len(staged), requests)


async def run_worker(settings: IngestionSettings, stop: asyncio.Event) -> None:
    """The job consumer and the callback consumer of one worker process."""
    from embedpipe.redis_conn import connect as connect_redis
    from ingestion.callbacks import CallbackConsumer
    from ingestion.db import connect as connect_db
    from ingestion.reembedding import sweep

    # The database may not be up yet: wait for it, but not past a stop.
    connecting = asyncio.create_task(connect_db(settings.database_url))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        log.info("ingestion worker stopped before the database came up")
        return
    pool = connecting.result()
    # Its blocking reads (job stream, callback queue) wait at most a second.
    redis = connect_redis(settings.redis_url, longest_block_s=1.0)
    tokenizer = await asyncio.to_thread(load_tokenizer)
    keys = IngestionKeys(settings.key_prefix)
    process_metrics = ProcessMetrics()
    metrics = WorkerMetrics(process_metrics)
    try:
        async with (
            aiohttp.ClientSession() as session,
            serving_metrics(process_metrics, settings.metrics),
        ):
            client = EmbeddingClient(
                session, settings.embedding_service_url, settings.service_key,
                timeout_s=settings.request_timeout_s,
            )  # fmt: skip
            worker = IngestionWorker(settings, redis, pool, client, tokenizer, metrics)
            callbacks = CallbackConsumer(
                redis, pool, keys,
                queue=settings.callback_queue, consumer=settings.consumer_name,
                dead_after_ms=settings.claim_idle_ms, metrics=metrics,
            )  # fmt: skip
            await asyncio.gather(
                worker.run(stop), callbacks.run(stop), sweep(pool, redis, keys, stop)
            )
    finally:
        await redis.aclose()
        await pool.close()
