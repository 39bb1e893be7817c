"""Prometheus metrics of the Embedding Service: the server's (jobs accepted, the queue)
and a worker's (jobs finished, chunks and tokens, batches, model time), by model.

Each process serves its own registry (embedpipe/metrics.py); summed over the workers,
`embedpipe_jobs_completed_total + embedpipe_jobs_failed_total` meets the servers'
`embedpipe_jobs_accepted_total` once the queue is empty.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram

from embedding.errors import ErrorCode
from embedding.jobs import JobQueue
from embedpipe.metrics import LATENCY_BUCKETS, ProcessMetrics

#: Chunks per model call: 1 to the largest batch a provider takes.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: Tokens per model call, padded to its longest input (what the model computes on).
PADDED_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
#: The codes a worker's error callbacks carry, shown at 0 from the start.
WORKER_FAILURE_CODES = (
    ErrorCode.PROVIDER_RATE_LIMITED,
    ErrorCode.PROVIDER_UNAVAILABLE,
    ErrorCode.PROVIDER_TIMEOUT,
    ErrorCode.PROVIDER_REJECTED,
    ErrorCode.PROVIDER_FAILED,
    ErrorCode.MAX_DELIVERIES_EXCEEDED,
)


class ServerMetrics:
    """The server's: what it accepted, and the job stream as it is when scraped."""

    def __init__(self, process: ProcessMetrics, queue: JobQueue, models: Iterable[str]) -> None:
        registry = process.registry
        self.accepted = Counter(
            "embedpipe_jobs_accepted_total",
            "Jobs accepted onto the job stream (a deduplicated request is not a new job).",
            ("model",),
            registry=registry,
        )
        self.deduplicated = Counter(
            "embedpipe_jobs_deduplicated_total",
            "Requests answered with the job accepted before for the same request.",
            ("model",),
            registry=registry,
        )
        self.chunks_accepted = Counter(
            "embedpipe_chunks_accepted_total",
            "Chunks of the accepted jobs.",
            ("model",),
            registry=registry,
        )
        self.queued = Gauge(
            "embedpipe_jobs_queue_depth",
            "Jobs accepted and not yet finished.",
            registry=registry,
        )
        self.in_progress = Gauge(
            "embedpipe_jobs_in_progress",
            "Jobs a worker has read and not yet finished.",
            registry=registry,
        )
        self.oldest_age = Gauge(
            "embedpipe_jobs_oldest_age_seconds",
            "Age of the oldest job not yet finished (0 when none is).",
            registry=registry,
        )
        self.dead_letters = Gauge(
            "embedpipe_jobs_dead_letters",
            "Jobs in the dead-letter stream.",
            registry=registry,
        )
        process.refreshers.append(self._refresher(queue))
        for model in models:  # at 0 from the start: a rate over them is 0, not "no data"
            for counter in (self.accepted, self.deduplicated, self.chunks_accepted):
                counter.labels(model)

    def _refresher(self, queue: JobQueue) -> Callable[[], Awaitable[None]]:
        async def refresh() -> None:
            stats = await queue.stats()
            self.queued.set(stats.queued)
            self.in_progress.set(stats.in_progress)
            self.oldest_age.set(stats.oldest_age_s)
            self.dead_letters.set(stats.dead_lettered)

        return refresh


class WorkerMetrics:
    """A worker's: every job it finished, by model and outcome, and its model calls."""

    def __init__(self, process: ProcessMetrics, models: Iterable[str]) -> None:
        registry = process.registry
        self.completed = Counter(
            "embedpipe_jobs_completed_total",
            "Jobs embedded and their success callback pushed.",
            ("model",),
            registry=registry,
        )
        self.failed = Counter(
            "embedpipe_jobs_failed_total",
            "Jobs finished with an error callback, by error code (dead-lettered ones too).",
            ("model", "code"),
            registry=registry,
        )
        self.redelivered = Counter(
            "embedpipe_jobs_redelivered_total",
            "Jobs read again after a worker left them unfinished.",
            ("model",),
            registry=registry,
        )
        self.dead_lettered = Counter(
            "embedpipe_jobs_dead_lettered_total",
            "Jobs moved to the dead-letter stream (model 'unknown': entries that were no job).",
            ("model",),
            registry=registry,
        )
        self.chunks = Counter(
            "embedpipe_chunks_embedded_total",
            "Chunks embedded, of successful jobs.",
            ("model",),
            registry=registry,
        )
        self.tokens = Counter(
            "embedpipe_tokens_embedded_total",
            "Tokens of the embedded chunks, as the provider counted them.",
            ("model",),
            registry=registry,
        )
        self.batch_size = Histogram(
            "embedpipe_batch_size_chunks",
            "Chunks per model call.",
            ("model",),
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.padded_tokens = Histogram(
            "embedpipe_batch_padded_tokens",
            "Tokens per model call, every input padded to the longest of its call.",
            ("model",),
            buckets=PADDED_TOKEN_BUCKETS,
            registry=registry,
        )
        self.model_seconds = Histogram(
            "embedpipe_model_run_seconds",
            "Time of one model call (a provider's retries included).",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for model in models:  # at 0 from the start: a rate over them is 0, not "no data"
            for counter in (
                self.completed,
                self.redelivered,
                self.dead_lettered,
                self.chunks,
                self.tokens,
            ):
                counter.labels(model)
            for code in WORKER_FAILURE_CODES:
                self.failed.labels(model, code.value)
