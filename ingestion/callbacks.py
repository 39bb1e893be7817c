"""The embedding callbacks (docs/contracts.md), consumed reliably.

Callbacks are moved (BLMOVE) from `EMBEDDING_CALLBACK_QUEUE` into this consumer's own
processing list and removed from it only after their effect is stored, so a crash loses
nothing: a consumer applies whatever is left in its own list before it takes the next
callback, and the lists of consumers whose heartbeat stopped are pushed back onto the
queue. Effects are idempotent (a repeated
callback stores nothing twice). A malformed callback goes to a dead-letter list with a
log line; it never blocks the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from opentelemetry.trace import SpanKind

from embedpipe import tracing
from embedpipe.metrics import ProcessMetrics
from embedpipe.redis_conn import RETRYABLE_ERRORS
from embedpipe.strict_json import StrictJsonError, loads
from embedpipe.task_status import TaskStatus
from embedpipe.text_safety import text_problem
from ingestion import store
from ingestion.db import Pool, database_unavailable
from ingestion.errors import IngestionErrorCode
from ingestion.events import publish
from ingestion.jobs import enqueue_reembed_step
from ingestion.keys import IngestionKeys
from ingestion.metrics import WorkerMetrics

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
BLOCK_S = 1
STORE_RETRY_S = 1.0


class MalformedCallbackError(ValueError):
    """A callback that is not the contract's JSON."""


#: The largest magnitude a vector component may have: pgvector stores 32-bit floats.
FLOAT32_MAX = 3.4028234663852886e38


def _is_component(value: object) -> bool:
    """A number a pgvector component can hold: finite, within the 32-bit float range.

    Comparing is exact for huge integers too (no conversion to float that could overflow),
    and false for NaN.
    """
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and -FLOAT32_MAX <= value <= FLOAT32_MAX
    )


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _check_embeddings(embeddings: object) -> None:
    if not isinstance(embeddings, list):
        raise MalformedCallbackError("embeddings missing or not a list")
    for i, item in enumerate(embeddings):
        if not isinstance(item, dict):
            raise MalformedCallbackError(f"embeddings[{i}] is not an object")
        if not _nonempty_str(item.get("chunk_id")):
            raise MalformedCallbackError(f"embeddings[{i}].chunk_id missing or not a string")
        vector = item.get("embedding")
        if not isinstance(vector, list) or not vector:
            raise MalformedCallbackError(
                f"embeddings[{i}].embedding missing or not a non-empty list"
            )
        for j, component in enumerate(vector):
            if not _is_component(component):
                raise MalformedCallbackError(
                    f"embeddings[{i}].embedding[{j}] is not a finite number"
                    " within the 32-bit float range"
                )


def parse_callback(raw: bytes) -> dict[str, Any]:
    """The callback as a dict with the contract's fields checked; MalformedCallbackError if not.

    Any input either parses or raises MalformedCallbackError naming the problem, never
    another exception: a callback that crashed the parser would be retried forever.
    """
    try:
        # Structure and vector components are checked below, naming where a bad one is;
        # numbers elsewhere are not ours to judge (fields may be added).
        body = loads(raw, max_depth=None, check_numbers=False)
    except StrictJsonError as exc:
        raise MalformedCallbackError(f"not JSON we accept: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedCallbackError("not a JSON object")
    if unstorable := text_problem(body, nul_allowed=False):
        raise MalformedCallbackError(unstorable)
    for name in ("task_id", "document_id", "collection_id", "tenant_id", "status"):
        if not _nonempty_str(body.get(name)):
            raise MalformedCallbackError(f"{name} missing or not a string")
    # Added to the seed's fields: the model that made the vectors (absent: the task's).
    if not isinstance(body.get("model", ""), str):
        raise MalformedCallbackError("model is not a string")
    if body["status"] == "success":
        _check_embeddings(body.get("embeddings"))
    elif body["status"] == "error":
        if not _nonempty_str(body.get("error_code")):
            raise MalformedCallbackError("error_code missing or not a string")
        if not isinstance(body.get("error_message"), str):
            raise MalformedCallbackError("error_message missing or not a string")
    else:
        status = body["status"][:40]
        raise MalformedCallbackError(f"status {status!r} is not 'success' or 'error'")
    return body


class CallbackConsumer:
    """One consumer of the callback queue."""

    def __init__(
        self,
        redis: aioredis.Redis,
        pool: Pool,
        keys: IngestionKeys,
        *,
        queue: str,
        consumer: str,
        dead_after_ms: int,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.keys = keys
        self.queue = queue
        self.consumer = consumer
        self.processing = keys.processing(consumer)
        self.dead_after_ms = dead_after_ms
        self.metrics = metrics or WorkerMetrics(ProcessMetrics())
        # Several beats per period: one late beat must not make a live consumer look dead.
        self.heartbeat_s = min(HEARTBEAT_S, dead_after_ms / 4000)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("callback consumer started consumer=%s queue=%s", self.consumer, self.queue)
        # Beat before replaying our leftovers, so that nobody takes us for dead (an old
        # beat of this name) and recovers the list we are replaying.
        with contextlib.suppress(*RETRYABLE_ERRORS):
            await self._heartbeat()
        beating = asyncio.create_task(self._keep_beating(stop))
        try:
            await self._consume(stop)
        finally:
            # Stopped, the beat ends by itself. Cancelled only if we were: a cancel can be
            # lost in a Redis command on Python 3.11 (see StreamConsumer.keep_alive).
            if not stop.is_set():
                beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        await self._hand_back()
        log.info("callback consumer stopped consumer=%s", self.consumer)

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                # Each callback leaves our processing list once applied, so whatever is in
                # it now is a leftover: of a previous life of this consumer name, or of a
                # move whose reply was lost (the client retries a command on a broken
                # connection, and the retry moves the next callback). Apply those first.
                leftovers: list[bytes] = await self.redis.lrange(self.processing, 0, -1)  # type: ignore[assignment]
                if leftovers:
                    log.info("applying leftover callbacks count=%d", len(leftovers))
                    for item in reversed(leftovers):
                        await self._process(item, stop)
                    continue
                raw: bytes | None = await self.redis.blmove(  # type: ignore[assignment]
                    self.queue, self.processing, BLOCK_S, src="RIGHT", dest="LEFT"
                )
                if raw is not None:
                    await self._process(raw, stop)
            except RETRYABLE_ERRORS as exc:
                log.warning("redis unavailable, retrying in 1s error=%s", exc)
                await asyncio.sleep(1.0)
            except Exception:
                # E.g. Redis refusing writes (OOM, READONLY): back off, never die.
                log.exception("callback consumer error; retrying in 1s")
                await asyncio.sleep(1.0)

    async def _keep_beating(self, stop: asyncio.Event) -> None:
        """Heartbeat, and recover the lists of dead consumers, on a clock of our own.

        Not between callbacks: a consumer busy with one callback for long (waiting out a
        database outage, or a lock) is alive, and others must not replay what it holds.
        """
        while not stop.is_set():
            try:
                await self._heartbeat()
                await self._recover_dead_consumers()
            except Exception as exc:  # Redis down or refusing: the next beat tries again
                log.warning("heartbeat failed consumer=%s error=%s", self.consumer, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)

    async def _hand_back(self) -> None:
        """On a clean stop, put what we still hold back on the queue for the others."""
        try:
            while await self.redis.lmove(self.processing, self.queue, src="RIGHT", dest="RIGHT"):
                pass
            await self.redis.zrem(self.keys.processing_consumers, self.consumer)
        except RETRYABLE_ERRORS as exc:
            # Our heartbeat stays: once it is old, another consumer recovers the list.
            log.warning("could not hand back callbacks consumer=%s error=%s", self.consumer, exc)

    async def _heartbeat(self) -> None:
        await self.redis.zadd(
            self.keys.processing_consumers, {self.consumer: int(time.time() * 1000)}
        )

    async def _recover_dead_consumers(self) -> None:
        cutoff = int(time.time() * 1000) - self.dead_after_ms
        dead = await self.redis.zrangebyscore(self.keys.processing_consumers, "-inf", cutoff)
        for raw_name in dead:
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            if name == self.consumer:
                continue
            source = self.keys.processing(name)
            moved = 0
            while await self.redis.lmove(source, self.queue, src="RIGHT", dest="RIGHT"):
                moved += 1
            await self.redis.zrem(self.keys.processing_consumers, name)
            log.warning("recovered callbacks of a dead consumer consumer=%s count=%d", name, moved)

    async def _dead_letter(self, raw: bytes, reason: str) -> None:
        await self.redis.lpush(self.keys.callbacks_dead_letter, raw)
        log.error(
            "callback moved to dead-letter list=%s reason=%s size=%d",
            self.keys.callbacks_dead_letter, reason, len(raw),
        )  # fmt: skip

    async def _process(self, raw: bytes, stop: asyncio.Event) -> None:
        """Apply one callback; retry while the database is down; then drop it from our list.

        A callback that cannot be applied (malformed, or refused by the database) goes to
        the dead-letter list: it must never stop the consumer or block the queue.
        """
        try:
            body = parse_callback(raw)
        except Exception as exc:
            # MalformedCallbackError, or a parser bug: either way retrying cannot help,
            # and a callback that raised here every time would block the queue for good.
            if not isinstance(exc, MalformedCallbackError):
                log.exception("callback parser failed")
            self.metrics.callbacks.labels("malformed").inc()
            await self._dead_letter(raw, f"malformed: {exc}")
            await self.redis.lrem(self.processing, 1, raw)  # type: ignore[arg-type]
            return
        while True:
            try:
                outcome = await self.handle_embedding_callback(body)
                break
            except Exception as exc:
                if database_unavailable(exc):
                    if stop.is_set():
                        return  # stays in our processing list; replayed next time
                    log.warning("database unavailable, callback kept; retrying error=%s", exc)
                    await asyncio.sleep(STORE_RETRY_S)
                    continue
                # Refused by the database, or a bug: never let one callback stop the
                # consumer or block the queue; keep it for inspection.
                log.exception("callback could not be applied task_id=%s", body.get("task_id"))
                await self._dead_letter(raw, f"not storable: {exc!r}")
                outcome = "dead_lettered"
                break
        self._count(body, outcome)
        await self.redis.lrem(self.processing, 1, raw)  # type: ignore[arg-type]

    def _count(self, body: dict[str, Any], outcome: str) -> None:
        """A callback's outcome, once whatever retries it took; a stored one's lag."""
        self.metrics.callbacks.labels(outcome).inc()
        if outcome == "stored" and isinstance(pushed := body.get("pushed_at"), str):
            with contextlib.suppress(ValueError):  # ours to add; another sender's may differ
                lag = time.time() - datetime.fromisoformat(pushed).timestamp()
                self.metrics.callback_lag.observe(max(0.0, lag))

    async def handle_embedding_callback(self, body: dict[str, Any]) -> str:
        """Apply one callback: store its vectors, or fail the task (in a span continuing
        the job's trace, when tracing is on and the callback names one). Its outcome, one
        of CALLBACK_OUTCOMES."""
        parent = body.get(tracing.TRACEPARENT)
        with tracing.span(
            "store callback",
            parent=parent if isinstance(parent, str) else None,
            kind=SpanKind.CONSUMER,
            attributes={"task_id": body["task_id"], "status": body["status"]},
        ):
            return await self._apply(body)

    async def _apply(self, body: dict[str, Any]) -> str:
        tenant, task_id = body["tenant_id"], body["task_id"]
        timed = self.metrics.store_duration.labels
        if body["status"] == "error":
            with timed("fail_task").time():
                failed = await store.fail_task(
                    self.pool, tenant, task_id,
                    error_code=body["error_code"], error_message=body["error_message"],
                )  # fmt: skip
            if failed is not None:
                await publish(self.redis, self.keys, failed)
            log.warning("task failed task_id=%s code=%s", task_id, body["error_code"])
            return "error"
        vectors = [(e["chunk_id"], e["embedding"]) for e in body["embeddings"]]
        with timed("store_embeddings").time(), tracing.span("store embeddings"):
            result = await store.store_embeddings(
                self.pool, tenant, task_id, vectors, model=body.get("model")
            )
        self.metrics.chunks_stored.inc(result.stored)  # stored now: a retry stores none again
        if result.stale:
            # Made with the model the collection had before a re-embed switched it; the
            # task is sent again with the new one.
            log.info("stale callback dropped task_id=%s model=%s", task_id, body.get("model"))
            return "stale"
        if result.refused:
            failed = await store.fail_task(
                self.pool, tenant, task_id,
                error_code=IngestionErrorCode.EMBEDDING_FAILED.value, error_message=result.refused,
            )  # fmt: skip
            if failed is not None:
                await publish(self.redis, self.keys, failed)
            log.error("callback refused task_id=%s reason=%s", task_id, result.refused)
            return "refused"
        task = result.task
        if task is None:
            log.warning(
                "callback for an unknown task dropped task_id=%s tenant_id=%s", task_id, tenant
            )
            return "unknown_task"
        if result.stored:
            await publish(self.redis, self.keys, task)
        if task["kind"] == store.REEMBED:
            if result.complete:
                # Its next step switches the collection (or copies what changed meanwhile).
                await enqueue_reembed_step(self.redis, self.keys, tenant, task_id)
        elif task["status"] == TaskStatus.STORING:
            with timed("promote").time(), tracing.span("complete task"):
                completed = await store.promote(self.pool, tenant, task_id)
            if completed is not None:
                await publish(self.redis, self.keys, completed)
                log.info("task completed task_id=%s chunks=%s", task_id, completed["chunks_total"])
        # One line per applied success callback (benchmarks count them); stored < chunks
        # means some of its vectors were stored already: a duplicate, suppressed.
        log.info(
            "callback applied task_id=%s chunks=%d stored=%d", task_id, len(vectors), result.stored
        )
        return "stored"
