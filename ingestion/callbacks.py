"""`_handle_embedding_callback`: the seed's callbacks, consumed reliably.

Callbacks are moved (BLMOVE) from `EMBEDDING_CALLBACK_QUEUE` into this consumer's own
processing list and removed from it only after their effect is stored, so a crash loses
nothing: at start a consumer replays its own list, and the lists of consumers whose
heartbeat stopped are pushed back onto the queue. Effects are idempotent (a repeated
callback stores nothing twice). A malformed callback goes to a dead-letter list with a
log line; it never blocks the queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

import redis.asyncio as aioredis

from embedpipe.redis_conn import RETRYABLE_ERRORS
from ingestion import store
from ingestion.db import DATABASE_UNAVAILABLE, Pool
from ingestion.errors import IngestionErrorCode
from ingestion.events import publish
from ingestion.keys import IngestionKeys

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
BLOCK_S = 1
STORE_RETRY_S = 1.0


class MalformedCallbackError(ValueError):
    """A callback that is not the seed's JSON."""


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(isinstance(item, str | dict) and _has_nul(item) for item in value)
    return False


def _refuse_constant(name: str) -> float:
    raise MalformedCallbackError(f"{name} is not a number a vector may hold")


def parse_callback(raw: bytes) -> dict[str, Any]:
    """The callback as a dict with the seed's fields checked; MalformedCallbackError if not."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedCallbackError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedCallbackError("not a JSON object")
    if _has_nul(body):
        raise MalformedCallbackError("contains NUL characters, which PostgreSQL cannot store")
    for name in ("task_id", "document_id", "collection_id", "tenant_id", "status"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise MalformedCallbackError(f"{name} missing or not a string")
    if body["status"] == "success":
        embeddings = body.get("embeddings")
        if not isinstance(embeddings, list):
            raise MalformedCallbackError("embeddings missing or not a list")
        for item in embeddings:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("chunk_id"), str)
                or not isinstance(item.get("embedding"), list)
                or not item["embedding"]
                or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                    for x in item["embedding"]
                )
            ):
                raise MalformedCallbackError("embeddings entries need chunk_id and a number list")
    elif body["status"] == "error":
        for name in ("error_code", "error_message"):
            if not isinstance(body.get(name), str):
                raise MalformedCallbackError(f"{name} missing or not a string")
    else:
        raise MalformedCallbackError(f"status {body['status']!r} is not 'success' or 'error'")
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
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.keys = keys
        self.queue = queue
        self.consumer = consumer
        self.processing = keys.processing(consumer)
        self.dead_after_ms = dead_after_ms

    async def run(self, stop: asyncio.Event) -> None:
        log.info("callback consumer started consumer=%s queue=%s", self.consumer, self.queue)
        next_beat = 0.0
        replayed = False
        while not stop.is_set():
            try:
                if time.monotonic() >= next_beat:
                    await self._heartbeat()
                    await self._recover_dead_consumers()
                    next_beat = time.monotonic() + HEARTBEAT_S
                if not replayed:
                    # Our own leftovers from a previous life of this consumer name.
                    leftovers: list[bytes] = await self.redis.lrange(self.processing, 0, -1)  # type: ignore[assignment]
                    for item in reversed(leftovers):
                        await self._process(item, stop)
                    replayed = True
                raw: bytes | None = await self.redis.blmove(  # type: ignore[assignment]
                    self.queue, self.processing, BLOCK_S, src="RIGHT", dest="LEFT"
                )
                if raw is not None:
                    await self._process(raw, stop)
            except RETRYABLE_ERRORS as exc:
                log.warning("redis unavailable, retrying in 1s error=%s", exc)
                replayed = False  # a move whose reply was lost may have left an item behind
                await asyncio.sleep(1.0)
            except Exception:
                # E.g. Redis refusing writes (OOM, READONLY): back off, never die.
                log.exception("callback consumer error; retrying in 1s")
                replayed = False
                await asyncio.sleep(1.0)
        await self._hand_back()
        log.info("callback consumer stopped consumer=%s", self.consumer)

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
        except MalformedCallbackError as exc:
            await self._dead_letter(raw, f"malformed: {exc}")
            await self.redis.lrem(self.processing, 1, raw)  # type: ignore[arg-type]
            return
        while True:
            try:
                await self.handle_embedding_callback(body)
                break
            except DATABASE_UNAVAILABLE as exc:
                if stop.is_set():
                    return  # stays in our processing list; replayed next time
                log.warning("database unavailable, callback kept; retrying error=%s", exc)
                await asyncio.sleep(STORE_RETRY_S)
            except Exception as exc:
                # Refused by the database, or a bug: never let one callback stop the
                # consumer or block the queue; keep it for inspection.
                log.exception("callback could not be applied task_id=%s", body.get("task_id"))
                await self._dead_letter(raw, f"not storable: {exc!r}")
                break
        await self.redis.lrem(self.processing, 1, raw)  # type: ignore[arg-type]

    async def handle_embedding_callback(self, body: dict[str, Any]) -> None:
        """The seed's `_handle_embedding_callback`: store vectors or fail the task."""
        tenant, task_id = body["tenant_id"], body["task_id"]
        if body["status"] == "error":
            failed = await store.fail_task(
                self.pool, tenant, task_id,
                error_code=body["error_code"], error_message=body["error_message"],
            )  # fmt: skip
            if failed is not None:
                await publish(self.redis, self.keys, failed)
            log.warning("task failed task_id=%s code=%s", task_id, body["error_code"])
            return
        vectors = [(e["chunk_id"], e["embedding"]) for e in body["embeddings"]]
        result = await store.store_embeddings(self.pool, tenant, task_id, vectors)
        if result.refused:
            failed = await store.fail_task(
                self.pool, tenant, task_id,
                error_code=IngestionErrorCode.EMBEDDING_FAILED.value, error_message=result.refused,
            )  # fmt: skip
            if failed is not None:
                await publish(self.redis, self.keys, failed)
            log.error("callback refused task_id=%s reason=%s", task_id, result.refused)
            return
        task = result.task
        if task is None:
            log.warning(
                "callback for an unknown task dropped task_id=%s tenant_id=%s", task_id, tenant
            )
            return
        if result.stored:
            await publish(self.redis, self.keys, task)
        if task["status"] == "storing":
            completed = await store.promote(self.pool, tenant, task_id)
            if completed is not None:
                await publish(self.redis, self.keys, completed)
                log.info("task completed task_id=%s chunks=%s", task_id, completed["chunks_total"])
