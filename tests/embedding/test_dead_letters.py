"""Dead-lettered jobs are listed and re-driven by `python -m embedding dead-letters|redrive`.

Jobs reach the dead-letter stream the way they do in production: a poison job kills the
real worker (tests/support/poison_worker.py) until it has been delivered too often, a job whose
worker vanished is claimed past `max_deliveries`, an entry that is not a job is set
aside. The commands run as child processes against the test's Redis.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from embedding.__main__ import main
from embedding.dead_letters import DeadLetters, Outcome
from embedding.jobs import JobQueue
from embedding.keys import WORKER_GROUP, EmbeddingKeys
from embedding.providers.local import LocalOnnxProvider
from embedding.providers.registry import ProviderRegistry
from embedding.settings import EmbeddingSettings
from embedpipe.bundled_model import DEFAULT_MODEL
from tests.support.jobs import CALLBACK_QUEUE, pop_callbacks, seed_request
from tests.support.poison_worker import POISON
from tests.support.processes import REPO, start_child
from tests.support.services import WorkerFactory, child_env, running_worker

KEYS = EmbeddingKeys()


@dataclass(frozen=True)
class Completed:
    code: int
    out: str
    err: str


async def run_command(settings: EmbeddingSettings, *args: str) -> Completed:
    """`python -m embedding <args>` as a child process pointed at the test's Redis."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "embedding",
        *args,
        env=child_env(settings),
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())


async def dead_letter_a_poison_job(
    settings: EmbeddingSettings, redis: aioredis.Redis, tmp_path: Path
) -> dict[str, Any]:
    """Run the poison-crashing worker until it gives the queued poison job up; its callback.

    With EMBEDDING_MAX_DELIVERIES=1 the first worker dies on the job and the second, on
    claiming it (its second delivery), dead-letters it.
    """
    env = child_env(settings, EMBEDDING_MAX_DELIVERIES="1", EMBEDDING_CLAIM_IDLE_MS="300")
    async with asyncio.timeout(60):
        while True:
            worker = start_child(
                ["-m", "tests.support.poison_worker"], env, tmp_path / "poison.log"
            )
            try:
                while worker.poll() is None:
                    item = await redis.brpop([CALLBACK_QUEUE], timeout=1)
                    if item is not None:
                        callback: dict[str, Any] = json.loads(item[1])
                        return callback
            finally:
                if worker.poll() is None:
                    worker.terminate()
                    worker.wait(15)


async def test_a_poison_job_is_listed_redriven_and_then_embedded_by_a_healthy_worker(
    settings: EmbeddingSettings,
    redis: aioredis.Redis,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    queue = JobQueue(redis, KEYS, dedupe_ttl_s=3600)
    await queue.ensure_group()
    request = seed_request(texts=[f"{POISON} pill", "a healthy sentence"], task_id="poison")
    poisoned = await queue.enqueue(request)

    failed = await dead_letter_a_poison_job(settings, redis, tmp_path)
    assert failed["status"] == "error" and failed["error_code"] == "MAX_DELIVERIES_EXCEEDED"
    assert failed["job_id"] == poisoned.job_id

    # Listed, for people and as JSON.
    listed = await run_command(settings, "dead-letters")
    assert listed.code == 0, listed.err
    header, row, summary = listed.out.splitlines()
    assert header.split() == [
        "ENTRY", "ID", "DEAD-LETTERED", "AT", "(UTC)", "JOB", "ID", "TENANT", "TASK", "REASON",
        "DELIVERIES",
    ]  # fmt: skip
    entry_id, dead_at, job_id, tenant, task, reason, deliveries = row.split()
    assert (job_id, tenant, task, reason, deliveries) == (
        poisoned.job_id, "tenant-a", "poison", "MAX_DELIVERIES_EXCEEDED", "2",
    )  # fmt: skip
    assert dead_at.endswith("Z") and dead_at[:4].isdigit()
    assert summary == f"1 dead-lettered in {KEYS.dead_letter}"
    as_json = await run_command(settings, "dead-letters", "--json")
    assert as_json.code == 0, as_json.err
    (letter,) = json.loads(as_json.out)
    assert letter["entry_id"] == entry_id and letter["dead_lettered_at"] == dead_at
    assert letter["job_id"] == poisoned.job_id and letter["reason"] == "MAX_DELIVERIES_EXCEEDED"
    assert letter["tenant_id"] == "tenant-a" and letter["task_id"] == "poison"
    assert letter["deliveries"] == 2 and letter["chunks"] == 2 and letter["redrivable"] is True
    listed_at_ms = int(entry_id.split("-")[0])
    assert abs(listed_at_ms / 1000 - time.time()) < 60

    # Re-driven (the cause is fixed: healthy workers from now on).
    redriven = await run_command(settings, "redrive", entry_id)
    assert redriven.code == 0, redriven.err
    first_line, last_line = redriven.out.splitlines()
    assert first_line.startswith(f"re-driven {entry_id}: job {poisoned.job_id} is now job ")
    new_job_id = first_line.split(" is now job ")[1].split()[0]
    assert new_job_id != poisoned.job_id
    assert last_line == "re-driven 1 of 1"
    assert await redis.xlen(KEYS.dead_letter) == 0

    async with worker_factory():
        (callback,) = await pop_callbacks(redis, 1, timeout_s=30)
        assert await redis.brpop([CALLBACK_QUEUE], timeout=1) is None

    assert callback["status"] == "success" and callback["task_id"] == "poison"
    assert callback["job_id"] == new_job_id
    assert [e["chunk_id"] for e in callback["embeddings"]] == [c.chunk_id for c in request.chunks]
    assert all(len(e["embedding"]) == 384 for e in callback["embeddings"])
    assert await redis.xlen(KEYS.jobs) == 0 and await redis.xlen(KEYS.dead_letter) == 0
    # The same request sent again is the re-driven job, not the dead one.
    again = await queue.enqueue(request)
    assert again.deduplicated and again.job_id == new_job_id
    empty = await run_command(settings, "dead-letters")
    assert (empty.code, empty.out.strip()) == (0, f"no dead-lettered jobs in {KEYS.dead_letter}")


async def dead_letter_an_abandoned_job_and_a_non_job(
    settings: EmbeddingSettings, redis: aioredis.Redis, local_provider: LocalOnnxProvider
) -> tuple[str, str]:
    """Dead-letter a job whose worker vanished, and an entry that is not a job.

    Returns the abandoned job's id and the non-job's entry id on the job stream.
    """
    queue = JobQueue(redis, KEYS, dedupe_ttl_s=3600)
    await queue.ensure_group()
    abandoned = await queue.enqueue(seed_request(task_id="abandoned"))
    # A worker takes the job and is never heard of again.
    await redis.xreadgroup(WORKER_GROUP, "vanished", {KEYS.jobs: ">"}, count=1)
    junk_id: Any = await redis.xadd(KEYS.jobs, {"junk": "not a job"})
    own = replace(settings, worker=replace(settings.worker, max_deliveries=1, claim_idle_ms=200))
    registry = ProviderRegistry({DEFAULT_MODEL: local_provider}, DEFAULT_MODEL)
    async with running_worker(own, registry):
        (failed,) = await pop_callbacks(redis, 1, timeout_s=20)
        async with asyncio.timeout(20):
            while await redis.xlen(KEYS.dead_letter) < 2:  # noqa: ASYNC110 (polling Redis)
                await asyncio.sleep(0.05)
    assert failed["job_id"] == abandoned.job_id
    assert failed["error_code"] == "MAX_DELIVERIES_EXCEEDED"
    return abandoned.job_id, junk_id.decode()


async def test_redrive_all_puts_back_every_job_and_says_why_an_unreadable_entry_stays(
    settings: EmbeddingSettings,
    redis: aioredis.Redis,
    local_provider: LocalOnnxProvider,
    worker_factory: WorkerFactory,
) -> None:
    old_job_id, junk_id = await dead_letter_an_abandoned_job_and_a_non_job(
        settings, redis, local_provider
    )
    letters = {row["reason"]: row for row in json.loads((await run_command(
        settings, "dead-letters", "--json"
    )).out)}  # fmt: skip
    junk = letters["INVALID_JOB"]
    assert junk["job_entry_id"] == junk_id and junk["job_id"] == ""
    assert junk["tenant_id"] is None and junk["redrivable"] is False
    job = letters["MAX_DELIVERIES_EXCEEDED"]
    assert job["job_id"] == old_job_id and job["deliveries"] == 2 and job["redrivable"] is True

    everything = await run_command(settings, "redrive", "--all")
    assert everything.code == 1
    assert everything.out.splitlines()[-1] == "re-driven 1 of 2"
    assert "cannot be re-driven: INVALID_JOB" in everything.err
    assert junk["entry_id"] in everything.err and "never a readable job" in everything.err
    # The unreadable entry is still there, and asking for it by name says the same.
    remaining: Any = await redis.xrange(KEYS.dead_letter)
    (left,) = remaining
    assert left[0].decode() == junk["entry_id"]
    by_name = await run_command(settings, "redrive", junk["entry_id"], job["entry_id"])
    assert by_name.code == 1 and by_name.out.splitlines()[-1] == "re-driven 0 of 2"
    assert "cannot be re-driven: INVALID_JOB" in by_name.err
    assert f"{job['entry_id']}: not in {KEYS.dead_letter} (already re-driven" in by_name.err
    listed = await run_command(settings, "dead-letters")
    assert listed.out.splitlines()[-1].endswith(
        "1 cannot be re-driven (INVALID_JOB: never a readable job)"
    )

    async with worker_factory():
        (callback,) = await pop_callbacks(redis, 1, timeout_s=30)
    assert callback["status"] == "success" and callback["task_id"] == "abandoned"
    assert callback["job_id"] != old_job_id


async def test_two_redrives_of_one_entry_at_once_enqueue_it_once(
    settings: EmbeddingSettings, redis: aioredis.Redis, local_provider: LocalOnnxProvider
) -> None:
    await dead_letter_an_abandoned_job_and_a_non_job(settings, redis, local_provider)
    dead = DeadLetters(redis, KEYS)
    (entry_id,) = [letter.entry_id async for letter in dead.entries() if letter.redrivable]

    results = await asyncio.gather(*(dead.redrive(entry_id) for _ in range(4)))

    assert sorted(r.outcome for r in results) == sorted(
        [Outcome.REDRIVEN, Outcome.NOT_FOUND, Outcome.NOT_FOUND, Outcome.NOT_FOUND]
    )
    on_job_stream: Any = await redis.xrange(KEYS.jobs)
    (fresh,) = on_job_stream
    (redriven,) = [r for r in results if r.outcome is Outcome.REDRIVEN]
    assert fresh[0].decode() == redriven.new_entry_id
    assert fresh[1][b"job_id"].decode() == redriven.new_job_id
    assert fresh[1][b"redriven_from"].decode() == redriven.old_job_id


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["redrive"], "name ENTRY_IDs or give --all"),
        (["redrive", "--all", "1700000000000-0"], "name ENTRY_IDs or give --all"),
        (["redrive", "tenant-a"], "'tenant-a' is not a stream entry id"),
    ],
)
def test_redrive_refuses_bad_arguments_before_touching_redis(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


async def test_the_commands_say_so_when_redis_is_unreachable(
    settings: EmbeddingSettings,
) -> None:
    unreachable = replace(settings, redis_url="redis://127.0.0.1:9/0")
    for args in (["dead-letters"], ["redrive", "--all"]):
        result = await run_command(unreachable, *args)
        assert result.code == 1 and result.out == ""
        assert result.err.startswith("error: Redis (REDIS_URL) failed: "), result.err
