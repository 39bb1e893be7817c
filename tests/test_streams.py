"""The stream consumer: a dead consumer's entries are found even when many entries of
live consumers sit before them in the pending list; keeping entries alive always ends."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio as aioredis

from embedpipe.redis_conn import connect
from embedpipe.redis_server import RedisServer
from embedpipe.streams import StreamConsumer, StreamEntry

STREAM = "test:stream"
GROUP = "test-group"
IDLE_MS = 200


def _consumer(redis: aioredis.Redis, name: str, read_count: int) -> StreamConsumer:
    return StreamConsumer(
        redis,
        stream=STREAM,
        group=GROUP,
        consumer=name,
        claim_idle_ms=IDLE_MS,
        read_count=read_count,
        block_ms=10,
    )


async def test_a_dead_consumers_entry_behind_many_live_ones_is_claimed(
    redis: aioredis.Redis,
) -> None:
    live = _consumer(redis, "live", read_count=50)
    dead = _consumer(redis, "dead", read_count=1)
    rescuer = _consumer(redis, "rescuer", read_count=1)
    await live.ensure_group()
    for n in range(50):
        await redis.xadd(STREAM, {"n": str(n)})
    held = await live.read_new()  # 50 entries a live consumer is working on
    await redis.xadd(STREAM, {"n": "lost"})
    (orphan,) = await dead.read_new()  # then its consumer dies
    await asyncio.sleep(IDLE_MS / 1000 * 1.5)
    await live.touch([entry.entry_id for entry in held])  # the live one is still at work

    claimed = []
    for _ in range(10):  # a few rounds, as the consume loop would make
        claimed += await rescuer.claim_stale()
        if claimed:
            break
    assert [entry.entry_id for entry in claimed] == [orphan.entry_id]
    assert claimed[0].fields == {b"n": b"lost"} and claimed[0].deliveries == 2


async def test_the_consume_loop_scans_a_long_pending_list_without_waiting_between_steps(
    redis: aioredis.Redis,
) -> None:
    live = _consumer(redis, "live", read_count=200)
    dead = _consumer(redis, "dead", read_count=1)
    rescuer = StreamConsumer(
        redis,
        stream=STREAM,
        group=GROUP,
        consumer="rescuer",
        claim_idle_ms=IDLE_MS,
        read_count=1,
        block_ms=5000,  # a blocking read between scan steps would take 5 s each
    )
    await live.ensure_group()
    for n in range(200):
        await redis.xadd(STREAM, {"n": str(n)})
    held = await live.read_new()
    await redis.xadd(STREAM, {"n": "lost"})
    (orphan,) = await dead.read_new()
    await asyncio.sleep(IDLE_MS / 1000 * 1.5)
    await live.touch([entry.entry_id for entry in held])

    handled: list[str] = []
    stop = asyncio.Event()

    async def handle(entries: list[StreamEntry]) -> None:
        handled.extend(entry.entry_id for entry in entries)
        stop.set()

    # 20 scan steps of 10 entries each reach the orphan; with a wait between steps, 100 s.
    await asyncio.wait_for(rescuer.consume(stop, handle, claim_every_s=60), timeout=4)
    assert handled == [orphan.entry_id]


async def test_keeping_entries_alive_ends_with_its_block_whenever_the_block_ends(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """A worker's client has a reply timeout, and with one, redis-py sends through
    `asyncio.wait_for`; on Python 3.11 that swallows a cancel landing as the send
    finishes. A beat stopped by cancelling then went on for ever: the worker hung after
    its batch, its jobs kept alive so that nobody else could claim them either."""
    client = connect(redis_server.url, longest_block_s=0.1)
    # A beat every 1 ms, so that blocks often end while one is on the wire.
    consumer = StreamConsumer(
        client, stream=STREAM, group=GROUP, consumer="busy",
        claim_idle_ms=3, read_count=5, block_ms=10,
    )  # fmt: skip
    await consumer.ensure_group()
    for n in range(5):
        await redis.xadd(STREAM, {"n": str(n)})
    ids = [entry.entry_id for entry in await consumer.read_new()]
    try:
        for n in range(400):
            try:
                async with asyncio.timeout(5):
                    async with consumer.keep_alive(ids):
                        await asyncio.sleep(random.uniform(0, 0.004))
            except TimeoutError:
                pytest.fail(f"keep-alive {n + 1} did not end with its block")
    finally:
        await client.aclose()
