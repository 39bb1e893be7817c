"""The embedding worker: job stream → batches → provider → callback, at least once.

Many workers can run; each is one consumer of the `embedding-workers` group. A job is
acknowledged only in the same atomic step that pushes its callback, so a worker killed at
any point loses nothing: its jobs are claimed by another worker after `claim_idle_ms`.
A job delivered more than `max_deliveries` times (it keeps killing workers) goes to the
dead-letter stream with an error callback. Redelivered jobs are embedded one at a time so
a poison job cannot take healthy ones down with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis.asyncio as aioredis
from opentelemetry.trace import SpanKind

from embedding.batching import Item, pack_batches
from embedding.callbacks import error_callback, success_callback
from embedding.core import embed_texts
from embedding.errors import EmbeddingError, ErrorCode
from embedding.jobs import Job, JobQueue, parse_entry
from embedding.keys import WORKER_GROUP, EmbeddingKeys
from embedding.metrics import WorkerMetrics
from embedding.providers.base import Vectors
from embedding.providers.registry import ProviderRegistry
from embedding.retry import call_with_retries
from embedding.settings import EmbeddingSettings
from embedpipe import tracing
from embedpipe.metrics import ProcessMetrics
from embedpipe.redis_conn import RETRYABLE_ERRORS
from embedpipe.retry import RetryPolicy
from embedpipe.streams import StreamConsumer, StreamEntry

log = logging.getLogger(__name__)

#: The model label of dead-lettered entries that were not readable jobs.
UNREADABLE_MODEL = "unknown"


@dataclass
class _JobResult:
    vectors: Vectors
    prompt_tokens: int


class EmbeddingWorker:
    """One consumer of the job stream."""

    def __init__(
        self,
        settings: EmbeddingSettings,
        registry: ProviderRegistry,
        redis: aioredis.Redis,
        metrics: ProcessMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = WorkerMetrics(metrics or ProcessMetrics(), registry.served())
        keys = EmbeddingKeys(settings.key_prefix)
        self.queue = JobQueue(redis, keys, dedupe_ttl_s=settings.idempotency_ttl_s)
        w = settings.worker
        self.consumer = StreamConsumer(
            redis,
            stream=keys.jobs,
            group=WORKER_GROUP,
            consumer=w.consumer_name,
            claim_idle_ms=w.claim_idle_ms,
            read_count=w.read_count,
            block_ms=w.block_ms,
        )
        self.retry = RetryPolicy(w.provider_max_retries + 1, w.retry_base_s, w.retry_max_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished first."""
        log.info(
            "worker started consumer=%s stream=%s", self.consumer.consumer, self.consumer.stream
        )
        await self.consumer.consume(
            stop, self.process, claim_every_s=self.settings.worker.claim_idle_ms / 2000
        )
        log.info("worker stopped consumer=%s", self.consumer.consumer)

    async def process(self, entries: Sequence[StreamEntry]) -> None:
        """Embed and finish a set of entries read together."""
        fresh: list[Job] = []
        retried: list[Job] = []
        for entry in entries:
            try:
                job = parse_entry(entry)
            except EmbeddingError as exc:
                await self._dead_letter_unreadable(entry, exc)
                continue
            if job.deliveries > self.settings.worker.max_deliveries:
                await self._dead_letter(job)
            elif job.deliveries > 1:
                self.metrics.redelivered.labels(job.request.model).inc()
                retried.append(job)
            else:
                fresh.append(job)
        groups = ([fresh] if fresh else []) + [[job] for job in retried]
        for group in groups:
            try:
                async with self.consumer.keep_alive([job.entry_id for job in group]):
                    await self._embed_and_finish(group)
            except RETRYABLE_ERRORS:
                raise
            except Exception:
                # A bug or a crash inside the model: leave the jobs un-acked. They are
                # redelivered one at a time and dead-lettered if they keep failing.
                log.exception(
                    "jobs left for redelivery job_ids=%s", ",".join(j.job_id for j in group)
                )

    async def _embed_and_finish(self, jobs: list[Job]) -> None:
        # A span per job (when tracing), continuing the trace of the call that sent it;
        # its callback carries the span on to the consumer.
        spans = [
            tracing.start_span(
                "embed job",
                parent=job.traceparent,
                kind=SpanKind.CONSUMER,
                attributes={"job_id": job.job_id, "deliveries": job.deliveries},
            )
            for job in jobs
        ]
        traces = [tracing.traceparent_of(span) if span else "" for span in spans]
        try:
            await self._embed_and_finish_traced(jobs, traces)
        finally:
            for span in spans:
                if span is not None:
                    span.end()

    async def _embed_and_finish_traced(self, jobs: list[Job], traces: list[str]) -> None:
        try:
            results = await self._embed_jobs(jobs, traces)
        except EmbeddingError as exc:
            if len(jobs) > 1 and not exc.transient:
                # One job's input may have made the provider refuse the whole batch:
                # find out which by trying each job alone (in its span still).
                for job, trace in zip(jobs, traces, strict=True):
                    await self._embed_and_finish_traced([job], [trace])
                return
            for job, trace in zip(jobs, traces, strict=True):
                await self._finish_error(job, exc.code, exc.message, trace)
            return
        for job, result, trace in zip(jobs, results, traces, strict=True):
            await self._finish_success(job, result, trace)

    async def _embed_jobs(self, jobs: list[Job], traces: list[str]) -> list[_JobResult]:
        """Vectors for every chunk of `jobs`, batched across jobs per model; a batch's span
        is a child of its first job's (`traces`), linked to the other jobs'."""
        vectors: list[Vectors | None] = [None] * len(jobs)
        tokens = [0] * len(jobs)
        # Batched per model and output size (a job may ask for shortened vectors).
        by_model: dict[tuple[str, int | None], list[int]] = defaultdict(list)
        for index, job in enumerate(jobs):
            request = job.request
            size = request.dimensions if request.HasField("dimensions") else None
            by_model[request.model, size].append(index)
        for (model, size), job_indexes in by_model.items():
            provider = self.registry.get(model)
            texts = [c.text for i in job_indexes for c in jobs[i].request.chunks]
            counts = iter(await asyncio.to_thread(provider.count_tokens, texts))
            items = [
                Item(i, k, chunk.text, next(counts))
                for i in job_indexes
                for k, chunk in enumerate(jobs[i].request.chunks)
            ]
            for i in job_indexes:
                vectors[i] = np.zeros(
                    (len(jobs[i].request.chunks), size or provider.dimensions), dtype=np.float32
                )
            batches = pack_batches(
                items,
                max_items=provider.max_batch_size,
                token_budget=self.settings.worker.batch_token_budget,
            )
            for batch in batches:
                texts_in_batch = [item.text for item in batch]
                owners = list(dict.fromkeys(traces[item.job_index] for item in batch))
                started = time.perf_counter()
                with tracing.span(
                    "model batch",
                    parent=owners[0],
                    links=tuple(owners[1:]),
                    attributes={"model": model, "chunks": len(batch)},
                ):
                    output = await call_with_retries(
                        functools.partial(embed_texts, provider, texts_in_batch, dimensions=size),
                        self.retry,
                        what=f"embed model={model} batch={len(batch)}",
                    )
                self._observe_batch(model, batch, time.perf_counter() - started)
                for item, row in zip(batch, output.vectors, strict=True):
                    target = vectors[item.job_index]
                    assert target is not None
                    target[item.chunk_index] = row
                # Usage is reported per batch; share it out by each job's token count.
                batch_tokens = sum(item.tokens for item in batch) or 1
                for item in batch:
                    tokens[item.job_index] += round(
                        output.prompt_tokens * item.tokens / batch_tokens
                    )
        return [_JobResult(v, t) for v, t in zip(vectors, tokens, strict=True) if v is not None]

    def _observe_batch(self, model: str, batch: Sequence[Item], seconds: float) -> None:
        self.metrics.model_seconds.labels(model).observe(seconds)
        self.metrics.batch_size.labels(model).observe(len(batch))
        longest = max(item.tokens for item in batch)
        self.metrics.padded_tokens.labels(model).observe(longest * len(batch))

    async def _finish_success(self, job: Job, result: _JobResult, trace: str) -> None:
        request = job.request
        callback = success_callback(
            request,
            job.job_id,
            [c.chunk_id for c in request.chunks],
            result.vectors,
            result.prompt_tokens,
            trace,
        )
        pushed = await self.queue.finish(
            entry_id=job.entry_id,
            job_id=job.job_id,
            callback_queue=request.callback_queue,
            callback_json=callback,
        )
        if pushed:  # counted once, by the delivery that pushed the callback
            self.metrics.completed.labels(request.model).inc()
            self.metrics.chunks.labels(request.model).inc(len(request.chunks))
            self.metrics.tokens.labels(request.model).inc(result.prompt_tokens)
        log.info(
            "job done job_id=%s task_id=%s tenant_id=%s chunks=%d deliveries=%d callback=%s",
            job.job_id,
            request.task_id,
            request.tenant_id,
            len(request.chunks),
            job.deliveries,
            "pushed" if pushed else "already-pushed",
        )

    async def _finish_error(self, job: Job, code: ErrorCode, message: str, trace: str) -> None:
        request = job.request
        pushed = await self.queue.finish(
            entry_id=job.entry_id,
            job_id=job.job_id,
            callback_queue=request.callback_queue,
            callback_json=error_callback(request, job.job_id, code, message, trace),
        )
        if pushed:
            self.metrics.failed.labels(request.model, code.value).inc()
        log.warning(
            "job failed job_id=%s task_id=%s tenant_id=%s code=%s error=%s callback=%s",
            job.job_id,
            request.task_id,
            request.tenant_id,
            code,
            message,
            "pushed" if pushed else "already-pushed",
        )

    async def _dead_letter(self, job: Job) -> None:
        limit = self.settings.worker.max_deliveries
        message = (
            f"job {job.job_id} was delivered {job.deliveries} times (limit {limit}) without "
            f"finishing; it is in the dead-letter stream"
        )
        pushed = await self.queue.finish(
            entry_id=job.entry_id,
            job_id=job.job_id,
            callback_queue=job.request.callback_queue,
            callback_json=error_callback(
                job.request, job.job_id, ErrorCode.MAX_DELIVERIES_EXCEEDED, message
            ),
            dead_letter_reason=ErrorCode.MAX_DELIVERIES_EXCEEDED.value,
            request=job.request.SerializeToString(),
            deliveries=job.deliveries,
        )
        model = job.request.model
        self.metrics.dead_lettered.labels(model).inc()
        if pushed:
            self.metrics.failed.labels(model, ErrorCode.MAX_DELIVERIES_EXCEEDED.value).inc()
        log.error(
            "job dead-lettered job_id=%s task_id=%s tenant_id=%s deliveries=%d",
            job.job_id,
            job.request.task_id,
            job.request.tenant_id,
            job.deliveries,
        )

    async def _dead_letter_unreadable(self, entry: StreamEntry, exc: EmbeddingError) -> None:
        await self.queue.finish(
            entry_id=entry.entry_id,
            job_id="",
            callback_queue="",
            callback_json=b"",
            dead_letter_reason=ErrorCode.INVALID_JOB.value,
            request=entry.fields.get(b"request", b""),
            deliveries=entry.deliveries,
        )
        self.metrics.dead_lettered.labels(UNREADABLE_MODEL).inc()
        log.error(
            "unreadable entry dead-lettered entry_id=%s error=%s", entry.entry_id, exc.message
        )
