"""Prometheus metrics of the Ingestion Service: the API's (searches by mode, tasks by
status) and a worker's (documents chunked, callbacks applied, chunks stored, callback lag,
store latency).

The API serves them at `GET /metrics` beside its request metrics; a worker on METRICS_PORT
(embedpipe/metrics.py). Once an ingest has settled, `embedpipe_chunks_stored_total`
summed over the workers meets the embedding workers' `embedpipe_chunks_embedded_total`
(a re-sent callback stores nothing twice).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge, Histogram

from embedpipe.metrics import LATENCY_BUCKETS, ProcessMetrics
from embedpipe.task_status import TaskStatus
from ingestion import store
from ingestion.db import Pool

#: What became of a callback taken from the queue.
CALLBACK_OUTCOMES = (
    "stored", "error", "stale", "refused", "unknown_task", "malformed", "dead_lettered",
)  # fmt: skip
#: The tasks table is counted (a scan of it all) at most this often, however many scrape.
TASKS_COUNTED_EVERY_S = 5.0
#: From a millisecond to ten minutes: a callback waits as long as the queue is behind.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)


class ApiMetrics:
    """The API's: searches (both fronts) and the tasks table as it is when scraped."""

    def __init__(self, process: ProcessMetrics, pool: Pool) -> None:
        registry = process.registry
        self.search_duration = Histogram(
            "embedpipe_search_duration_seconds",
            "Time to answer a search, query embedding included, by mode.",
            ("mode",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tasks = Gauge(
            "embedpipe_tasks",
            "Tasks by status, over every tenant (counted at most every "
            f"{TASKS_COUNTED_EVERY_S:g} s).",
            ("status",),
            registry=registry,
        )
        process.refreshers.append(self._refresher(pool))

    def _refresher(self, pool: Pool) -> Callable[[], Awaitable[None]]:
        counted_at = -TASKS_COUNTED_EVERY_S

        async def refresh() -> None:
            nonlocal counted_at
            if time.monotonic() - counted_at < TASKS_COUNTED_EVERY_S:
                return
            counts = await store.tasks_by_status(pool)
            counted_at = time.monotonic()
            for status in TaskStatus:
                self.tasks.labels(status.value).set(counts.get(status.value, 0))

        return refresh


class WorkerMetrics:
    """An ingestion worker's: its jobs and the callbacks it applies."""

    def __init__(self, process: ProcessMetrics) -> None:
        registry = process.registry
        self.documents = Counter(
            "embedpipe_documents_chunked_total",
            "Documents chunked and sent to be embedded.",
            registry=registry,
        )
        self.chunks_sent = Counter(
            "embedpipe_chunks_sent_total",
            "Chunks of uploaded documents sent to the Embedding Service.",
            registry=registry,
        )
        self.callbacks = Counter(
            "embedpipe_callbacks_total",
            "Callbacks taken from the queue, by outcome: stored, error (the job failed), "
            "stale (another model's), refused, unknown_task, malformed, dead_lettered (the "
            "database refused it); each counted once, however many retries it took.",
            ("outcome",),
            registry=registry,
        )
        for outcome in CALLBACK_OUTCOMES:  # at 0 from the start
            self.callbacks.labels(outcome)
        self.chunks_stored = Counter(
            "embedpipe_chunks_stored_total",
            "Chunk vectors stored (a repeated callback stores nothing twice).",
            registry=registry,
        )
        self.callback_lag = Histogram(
            "embedpipe_callback_lag_seconds",
            "From the worker's push of a callback to its vectors stored (the callback's "
            "pushed_at; clocks of two machines).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.store_duration = Histogram(
            "embedpipe_store_duration_seconds",
            "Time of a store operation, by operation.",
            ("operation",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
