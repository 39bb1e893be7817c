"""At-least-once consumption of a Redis Stream through a consumer group.

The discipline every worker of ours follows: read new entries with XREADGROUP; take over
entries whose consumer went quiet (XAUTOCLAIM after `claim_idle_ms`), learning how often
each was delivered so a poison entry can be set aside; keep our own in-flight entries
fresh while working on them (XCLAIM ... JUSTID resets their idle time without counting a
delivery), and acknowledge only after the effect is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from embedpipe.redis_conn import RETRYABLE_ERRORS, as_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobStreamKeys:
    """The keys of a service's job stream, under its key prefix: the stream of jobs
    (entries are deleted once acknowledged, never trimmed) and the dead-letter stream of
    jobs given up on. Each service's keys module adds its own."""

    prefix: str

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}:jobs:dead"


@dataclass(frozen=True)
class StreamEntry:
    """One entry, with the number of times it has been delivered (1 on first read)."""

    entry_id: str
    fields: dict[bytes, bytes]
    deliveries: int


class StreamConsumer:
    """One named consumer of a consumer group on one stream."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        stream: str,
        group: str,
        consumer: str,
        claim_idle_ms: int,
        read_count: int,
        block_ms: int,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.read_count = read_count
        self.block_ms = block_ms
        #: Where the next XAUTOCLAIM scan of the pending list goes on from ("0-0": start).
        self.claim_cursor = "0-0"

    async def ensure_group(self) -> None:
        """Create the group (and stream) if missing; it reads from the stream's start."""
        await ensure_group(self.redis, self.stream, self.group)

    async def read_new(self, *, wait: bool = True) -> list[StreamEntry]:
        """Entries never delivered before, waiting up to `block_ms` for one if `wait`."""
        reply: Any = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.read_count,
            block=self.block_ms if wait else None,
        )
        entries: list[StreamEntry] = []
        for _stream, items in reply or []:
            for raw_id, fields in items:
                entries.append(StreamEntry(as_text(raw_id), dict(fields or {}), 1))
        return entries

    async def claim_stale(self, count: int = 1) -> list[StreamEntry]:
        """Take over up to `count` entries idle for `claim_idle_ms` (their consumer died).

        One at a time by default: an entry's delivery count then only grows while it is
        really being worked on, so a poison entry that kills its worker does not push
        the entries claimed next to it towards the dead-letter limit.

        Redis looks at no more than 10 x `count` pending entries per call, so the scan
        goes on from where the last call stopped (`claim_cursor`) and starts over at the
        end of the list: a dead consumer's entries behind many that live consumers hold
        are reached too.
        """
        reply: Any = await self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self.claim_cursor,
            count=count,
        )
        self.claim_cursor = as_text(reply[0]) if reply else "0-0"
        items = reply[1] if reply else []
        claimed = [(as_text(raw_id), dict(fields)) for raw_id, fields in items if fields]
        if not claimed:
            return []
        counts = await self._delivery_counts([entry_id for entry_id, _ in claimed])
        entries = [StreamEntry(i, f, counts.get(i, 1)) for i, f in claimed]
        log.info(
            "claimed stale entries stream=%s consumer=%s ids=%s",
            self.stream,
            self.consumer,
            ",".join(e.entry_id for e in entries),
        )
        return entries

    async def _delivery_counts(self, entry_ids: Sequence[str]) -> dict[str, int]:
        rows: Any = await self.redis.xpending_range(
            self.stream,
            self.group,
            min=entry_ids[0],
            max=entry_ids[-1],
            count=len(entry_ids) * 4 + 16,
            consumername=self.consumer,
        )
        wanted = set(entry_ids)
        counts: dict[str, int] = {}
        for row in rows:
            entry_id = as_text(row["message_id"])
            if entry_id in wanted:
                counts[entry_id] = int(row["times_delivered"])
        return counts

    async def consume(
        self,
        stop: asyncio.Event,
        handle: Callable[[list[StreamEntry]], Awaitable[None]],
        *,
        claim_every_s: float,
        retry_on: tuple[type[Exception], ...] = (),
    ) -> None:
        """Hand entries to `handle` until `stop` is set: stale ones first (looked for every
        `claim_every_s`, and again at once while there are some or the scan of the pending
        list is not through), else new ones.

        Redis outages and refusals (and the errors in `retry_on`, e.g. a database that is
        down) are waited out, never fatal: what was in hand stays pending and comes back.
        """
        await self.ensure_group()
        next_claim = 0.0
        while not stop.is_set():
            try:
                entries: list[StreamEntry] = []
                scanning = False
                if time.monotonic() >= next_claim:
                    entries = await self.claim_stale()
                    scanning = self.claim_cursor != "0-0"
                    next_claim = 0.0 if entries or scanning else time.monotonic() + claim_every_s
                if not entries:
                    # Mid-scan of the pending list, new entries are taken if there are
                    # some, but not waited for: the scan goes on at once.
                    entries = await self.read_new(wait=not scanning)
                if entries:
                    await handle(entries)
            except (*RETRYABLE_ERRORS, *retry_on) as exc:
                log.warning("unavailable, retrying in 1s stream=%s error=%s", self.stream, exc)
                await asyncio.sleep(1.0)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # Redis lost the stream (restarted without persistence): start afresh.
                    log.warning("stream or group missing; recreating it stream=%s", self.stream)
                    await self.ensure_group()
                else:  # e.g. OOM or READONLY: back off, never die
                    log.warning("redis refused a command, retrying in 1s error=%s", exc)
                    await asyncio.sleep(1.0)

    async def touch(self, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of entries we are still working on."""
        if entry_ids:
            await self.redis.xclaim(
                self.stream, self.group, self.consumer, 0, list(entry_ids), justid=True
            )

    @contextlib.asynccontextmanager
    async def keep_alive(self, entry_ids: Sequence[str]) -> AsyncIterator[None]:
        """While the body runs, touch `entry_ids` often enough that nobody claims them.

        The beat is told to stop, never cancelled: on Python 3.11 a cancel that lands as
        a Redis command finishes can be swallowed (redis-py sends through
        `asyncio.wait_for`, which drops such a cancel), and the beat would then run, and
        keep our entries from being claimed, for ever.
        """
        interval_s = self.claim_idle_ms / 3000
        done = asyncio.Event()

        async def beat() -> None:
            while not await _wait_event(done, interval_s):
                try:
                    await self.touch(entry_ids)
                except Exception as exc:  # a missed beat only risks a duplicate delivery
                    log.warning("keep-alive failed stream=%s error=%s", self.stream, exc)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            done.set()
            await task


async def _wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Whether `event` got set within `timeout_s`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create `group` on `stream` from its first entry, creating the stream if needed."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
