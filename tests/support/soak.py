"""Soak: the whole stack under load while its embedding workers are SIGKILLed, counted.

The one-command stack (`python -m embedpipe.stack`: private PostgreSQL, the embedding
server, `--workers` embedding workers, gateway, ingestion API and worker) runs as a child,
on a redis-server of the soak's own (append-only file on). Small documents (one chunk
each, so one embedding job each) are uploaded with a few in flight, until `--jobs` were
sent or `--duration` seconds passed. All the while, every `--kill-every` seconds one
embedding worker, picked at random, is SIGKILLed; the stack restarts it. With
`--restart-redis-every S`, Redis is also stopped (SIGTERM) every S seconds and started
again on its port and data after `--redis-down` seconds; the API's 429/503 answers
meanwhile are waited out and retried, as a client should, and counted. When every
document has finished, the figures come from the API (every task's status and chunk
counts) and from the services' own log lines:

* jobs sent: documents accepted (202), one embedding job each;
* callbacks received: ingestion "callback applied" lines (the consumer is never killed);
* duplicates suppressed: embedding-worker "job done ... callback=already-pushed" lines (a job
  finished twice, its callback pushed once) plus "callback applied" lines that stored fewer
  vectors than they carried (a repeated callback that changed nothing);
* max redeliveries: the most deliveries a finished job needed, minus one, from the "job
  done" lines (a worker killed between pushing a callback and logging it leaves no line);
* lost: documents that never completed; effects off: tasks whose stored vectors (counted
  from the log and from `chunks_embedded`) differ from their chunk count.

`SoakFigures.held` says whether nothing was lost and every job had exactly one effect.
The command is `python -m bench.soak`; a shorter run is a fault test (tests/fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from embedpipe.redis_server import RedisServer
from tests.support.stack import RunningStack, clean_env, running_stack
from tests.support.synthetic_text import make_document

COLLECTION = "soak"
SEED = 20261125
#: Words per document: well under one chunk, so each document is one embedding job.
DOCUMENT_WORDS = 60
#: The run is declared broken when no document finishes for this long.
STALL_TIMEOUT_S = 180.0
#: How soon a killed worker's jobs are claimed by another (the default is 30 s).
CLAIM_IDLE_MS = "3000"
#: Deliveries before a job counts as poison (the default is 5). A worker killed every 2 s
#: on 2 cores is far beyond the crash rate that limit is meant for: a fresh worker first
#: claims the oldest stale job, so one job can be in hand at several kills in a row and
#: would be dead-lettered (with an error callback) by design. The report shows how close
#: the run came: max redeliveries.
MAX_DELIVERIES = 10

_JOB_DONE = re.compile(r"job done job_id=\S+ .*deliveries=(\d+) callback=(pushed|already-pushed)")
_APPLIED = re.compile(r"callback applied task_id=(\S+) chunks=(\d+) stored=(\d+)")


@dataclass
class SoakConfig:
    jobs: int
    duration_s: float | None = None
    #: Seconds between SIGKILLs of an embedding worker (None: no kills).
    kill_every_s: float | None = 2.0
    #: Seconds between Redis restarts (None: none), and how long it stays down each time.
    redis_restart_every_s: float | None = None
    redis_down_s: float = 2.0
    workers: int = 2
    in_flight: int = 8
    seed: int = SEED
    #: Spread the uploads over at least this many seconds (None: as fast as they go), so a
    #: run on a fast machine still meets the disruptions it is meant to meet.
    send_over_s: float | None = None


@dataclass
class SoakFigures:
    jobs_sent: int = 0
    completed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    lost: int = 0
    kills: int = 0
    restarts: int = 0
    redis_restarts: int = 0
    #: API answers of 429/503 (e.g. while Redis was down), each waited out and retried.
    refused: int = 0
    callbacks_received: int = 0
    duplicates_embedding: int = 0
    duplicates_ingestion: int = 0
    max_redeliveries: int = 0
    dead_lettered: int = 0
    chunks_expected: int = 0
    chunks_stored: int = 0
    #: Tasks whose stored vectors differ from their chunk count (expected: none).
    effects_off: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def held(self) -> bool:
        """Nothing lost, nothing failed, and exactly one effect per job."""
        return not (self.lost or self.failed or self.effects_off) and (
            self.chunks_stored == self.chunks_expected
        )

    def report(self) -> str:
        return "\n".join(
            [
                f"soak: {self.seconds:.0f} s, {self.kills} embedding workers SIGKILLed "
                f"({self.restarts} restarts seen), Redis restarted {self.redis_restarts} times, "
                f"{self.refused} API calls refused with 429/503 and retried",
                f"  jobs sent            {self.jobs_sent}",
                f"  callbacks received   {self.callbacks_received}",
                f"  duplicates suppressed {self.duplicates_embedding + self.duplicates_ingestion}"
                f" (embedding {self.duplicates_embedding}, ingestion {self.duplicates_ingestion})",
                f"  max redeliveries     {self.max_redeliveries}"
                f" (poison limit: {MAX_DELIVERIES} deliveries)",
                f"  dead-lettered        {self.dead_lettered}",
                f"  completed            {self.completed}",
                f"  failed               {len(self.failed)}",
                f"  lost                 {self.lost}",
                f"  vectors stored       {self.chunks_stored} of {self.chunks_expected}",
                f"  jobs with other than one effect {len(self.effects_off)}",
            ]
        )


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; whether it is."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


class _RedisBouncer:
    """Stops Redis (SIGTERM: it writes its append-only file) every `every_s` seconds and
    starts it again on the same port and data after `down_s`."""

    def __init__(self, redis: RedisServer, every_s: float, down_s: float) -> None:
        self.redis = redis
        self.every_s = every_s
        self.down_s = down_s
        self.restarts = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; a restart under way is finished first (Redis is up at the end)."""
        while not await _wait(stop, self.every_s):
            await asyncio.to_thread(self.redis.stop)
            await asyncio.sleep(self.down_s)
            await asyncio.to_thread(self.redis.start)
            self.restarts += 1


class _Killer:
    """SIGKILLs a random embedding worker of the stack every `every_s` seconds."""

    def __init__(self, stack: RunningStack, every_s: float, rng: random.Random) -> None:
        self.stack = stack
        self.every_s = every_s
        self.rng = rng
        self.killed: set[int] = set()

    async def run(self, stop: asyncio.Event) -> None:
        while not await _wait(stop, self.every_s):
            alive = [
                pid
                for pid in self.stack.pids("embedding-worker-").values()
                if pid not in self.killed
            ]
            if not alive:
                continue  # all of them are being restarted
            pid = self.rng.choice(alive)
            self.killed.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                self.killed.discard(pid)


@dataclass
class _Api:
    """The ingestion API as a patient client uses it: 429 and 503 are waited out
    (Retry-After) and retried, and counted."""

    session: aiohttp.ClientSession
    base: str
    refused: int = 0

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        while True:
            async with self.session.request(method, self.base + path, **kwargs) as response:
                if response.status in (429, 503):
                    self.refused += 1
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                body: dict[str, Any] = await response.json()
                if response.status >= 400:
                    raise RuntimeError(f"{method} {path}: {response.status} {body}")
                return body


async def _send(api: _Api, config: SoakConfig, deadline: float) -> dict[str, str]:
    """Upload documents until `config.jobs` or the deadline; document id → task id."""
    rng = random.Random(config.seed)
    tasks: dict[str, str] = {}
    slots = asyncio.Semaphore(config.in_flight)
    path = f"/api/v1/collections/{COLLECTION}/documents"

    async def upload(number: int, text: str) -> None:
        try:
            document_id = f"doc-{number:06d}"
            body = await api.call("POST", path, json={"text": text, "document_id": document_id})
            tasks[document_id] = body["task_id"]
        finally:
            slots.release()

    uploads: list[asyncio.Task[None]] = []
    started = time.monotonic()
    interval_s = (config.send_over_s or 0.0) / max(1, config.jobs)
    for number in range(config.jobs):
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(max(0.0, started + number * interval_s - time.monotonic()))
        await slots.acquire()
        text = f"Soak document {number}. " + make_document(rng, DOCUMENT_WORDS)
        uploads.append(asyncio.create_task(upload(number, text)))
    await asyncio.gather(*uploads)
    return tasks


async def _documents(api: _Api) -> list[dict[str, Any]]:
    """Every document of the soak's collection, page by page."""
    found: list[dict[str, Any]] = []
    token = ""
    while True:
        query = urlencode({"page_size": 1000, "page_token": token})
        body = await api.call("GET", f"/api/v1/collections/{COLLECTION}/documents?{query}")
        found += body["documents"]
        token = body["next_page_token"]
        if not token:
            return found


async def _wait_finished(api: _Api, expected: int) -> None:
    """Until every uploaded document is completed or failed; fails on a stall."""
    finished, last_change = -1, time.monotonic()
    while True:
        statuses = Counter(d["status"] for d in await _documents(api))
        now_finished = statuses["completed"] + statuses["failed"]
        if now_finished >= expected:
            return
        if now_finished != finished:
            finished, last_change = now_finished, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT_S:
            raise RuntimeError(f"no document finished for {STALL_TIMEOUT_S:.0f} s: {statuses}")
        await asyncio.sleep(1.0)


async def _task_rows(api: _Api, task_ids: list[str]) -> list[dict[str, Any]]:
    slots = asyncio.Semaphore(16)

    async def one(task_id: str) -> dict[str, Any]:
        async with slots:
            return await api.call("GET", f"/api/v1/tasks/{task_id}")

    return list(await asyncio.gather(*(one(t) for t in task_ids)))


def _count_logs(figures: SoakFigures, lines: list[str]) -> dict[str, int]:
    """Fill the log-derived figures; returns vectors stored per task according to the log."""
    stored_by_task: Counter[str] = Counter()
    for line in lines:
        if match := _JOB_DONE.search(line):
            deliveries, outcome = int(match.group(1)), match.group(2)
            figures.max_redeliveries = max(figures.max_redeliveries, deliveries - 1)
            if outcome == "already-pushed":
                figures.duplicates_embedding += 1
        elif match := _APPLIED.search(line):
            chunks, stored = int(match.group(2)), int(match.group(3))
            figures.callbacks_received += 1
            stored_by_task[match.group(1)] += stored
            if stored < chunks:
                figures.duplicates_ingestion += 1
        elif "job dead-lettered" in line:
            figures.dead_lettered += 1
        elif re.search(r"service=embedding-worker-\d+ exited code=-9; restarting it", line):
            figures.restarts += 1
    return stored_by_task


async def soak(config: SoakConfig, workdir: Path) -> SoakFigures:
    """Run the soak in `workdir` (Redis's and the stack's data go there) and count."""
    redis = RedisServer(workdir / "redis", appendonly=True)
    await asyncio.to_thread(redis.start)
    env = clean_env(
        workdir / "data",
        REDIS_URL=redis.url,
        EMBEDDING_WORKERS=str(config.workers),
        EMBEDDING_CLAIM_IDLE_MS=CLAIM_IDLE_MS,
        EMBEDDING_MAX_DELIVERIES=str(MAX_DELIVERIES),
        LOG_LEVEL="INFO",
    )
    figures = SoakFigures()
    try:
        async with running_stack(env) as stack:
            headers = {"Authorization": f"Bearer {stack.key}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                api = _Api(session, stack.ingestion_url)
                await api.call("POST", "/api/v1/collections", json={"collection_id": COLLECTION})
                killer = _Killer(stack, config.kill_every_s or 0, random.Random(config.seed))
                bouncer = _RedisBouncer(
                    redis, config.redis_restart_every_s or 0, config.redis_down_s
                )
                calm = asyncio.Event()
                disruptions = [
                    asyncio.create_task(chaos.run(calm))
                    for chaos, wanted in (
                        (killer, config.kill_every_s),
                        (bouncer, config.redis_restart_every_s),
                    )
                    if wanted
                ]
                started = time.monotonic()
                deadline = started + (config.duration_s or float("inf"))
                try:
                    tasks = await _send(api, config, deadline)
                    await _wait_finished(api, len(tasks))
                finally:
                    calm.set()
                    await asyncio.gather(*disruptions)
                figures.seconds = time.monotonic() - started
                figures.kills = len(killer.killed)
                figures.redis_restarts = bouncer.restarts
                figures.jobs_sent = len(tasks)
                rows = await _task_rows(api, list(tasks.values()))
                figures.refused = api.refused
            await asyncio.sleep(0.5)  # the last log lines of the services
            stored_by_task = _count_logs(figures, stack.lines)
    finally:
        await asyncio.to_thread(redis.stop)
    for row in rows:
        task_id = row["task_id"]
        if row["status"] == "completed":
            figures.completed += 1
        elif row["status"] == "failed":
            figures.failed[task_id] = f"{row.get('error_code')}: {row.get('error_message')}"
        else:
            figures.lost += 1
        figures.chunks_expected += row["chunks_total"]
        figures.chunks_stored += row["chunks_embedded"]
        if not row["chunks_embedded"] == stored_by_task[task_id] == row["chunks_total"]:
            figures.effects_off.append(task_id)
    figures.lost += figures.jobs_sent - len(rows)
    return figures
