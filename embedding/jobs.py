"""The job stream: accepting jobs idempotently and finishing them exactly once.

A job is one GenerateEmbeddingsRequest, stored as protobuf bytes in a stream entry
(`job_id`, `request`, `accepted_ms`). Both the accept and the finish are Lua scripts, so
each is atomic: a job is either enqueued with its dedupe key or not at all, and its
callback push, `done` marker, acknowledgement and deletion happen together.

Accepts are committed in groups: while one script call is on its way, the jobs offered
meanwhile wait and then go together in the next, one round trip (and one append-only
write) for all of them. An accept alone goes at once; under load the groups grow by
themselves. Measured with one server (`make bench-gateway`, 2026-12-04): 1,239 against
1,364 accepted/s, the server's CPU per job 691 against 630 µs, Redis's 136 against 119.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError

from embedding.errors import EmbeddingError, ErrorCode
from embedding.keys import WORKER_GROUP, EmbeddingKeys
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.redis_conn import RETRYABLE_ERRORS, as_text
from embedpipe.streams import StreamEntry, ensure_group

log = logging.getLogger(__name__)

# KEYS: job stream, then the dedupe key of each job.
# ARGV: dedupe ttl_s, max backlog, then four per job: job_id, request bytes, accepted_ms,
#       traceparent ('' = none).
# Returns two per job, in order: created (1; 0: an identical job was accepted before, or
# earlier in this call; -1: the backlog is full) and the job's record ('<job_id> <ms>').
_ENQUEUE = """
local ttl, backlog = tonumber(ARGV[1]), tonumber(ARGV[2])
local waiting = redis.call('XLEN', KEYS[1])
local out = {}
for i = 2, #KEYS do
  local a = 3 + (i - 2) * 4
  local existing = redis.call('GET', KEYS[i])
  if existing then
    out[#out + 1] = 0
    out[#out + 1] = existing
  elseif waiting >= backlog then
    out[#out + 1] = -1
    out[#out + 1] = ''
  else
    if ARGV[a + 3] ~= '' then
      redis.call('XADD', KEYS[1], '*', 'job_id', ARGV[a], 'request', ARGV[a + 1],
                 'accepted_ms', ARGV[a + 2], 'traceparent', ARGV[a + 3])
    else
      redis.call('XADD', KEYS[1], '*', 'job_id', ARGV[a], 'request', ARGV[a + 1],
                 'accepted_ms', ARGV[a + 2])
    end
    local record = ARGV[a] .. ' ' .. ARGV[a + 2]
    redis.call('SET', KEYS[i], record, 'EX', ttl)
    waiting = waiting + 1
    out[#out + 1] = 1
    out[#out + 1] = record
  end
end
return out
"""

# KEYS: done marker, callback queue, job stream, dead-letter stream.
# ARGV: group, entry id, callback JSON ('' = none), done ttl_s,
#       dead-letter reason ('' = not dead), job_id, request bytes, deliveries.
_FINISH = """
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'job_id', ARGV[6], 'request', ARGV[7],
             'reason', ARGV[5], 'deliveries', ARGV[8], 'entry_id', ARGV[2])
end
local pushed = 0
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'list' and kind ~= 'none' then
  pushed = -1  -- the callback queue names a key that is not a list: never clobber it
elseif ARGV[3] ~= '' and redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[4])) then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  pushed = 1
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return pushed
"""


#: What a caller refused for a full backlog is told to wait.
BACKLOG_RETRY_AFTER_S = 5.0
#: The most jobs, and bytes of requests, one script call accepts; more waiting go in the
#: next call.
MAX_JOBS_PER_CALL = 64
MAX_BYTES_PER_CALL = 4 * 1024 * 1024


@dataclass(frozen=True)
class AcceptedJob:
    job_id: str
    accepted_ms: int
    deduplicated: bool


@dataclass(frozen=True)
class _Offered:
    """A job waiting for its script call, and its caller's answer: (created, record)."""

    dedupe_key: str
    args: tuple[str, bytes, int, str]
    answer: asyncio.Future[tuple[int, bytes]]


@dataclass(frozen=True)
class QueueStats:
    """The job stream at one moment (see QueueService in queue_service.proto)."""

    queued: int
    in_progress: int
    oldest_age_s: float
    dead_lettered: int


@dataclass(frozen=True)
class Job:
    """A job read from the stream."""

    entry_id: str
    job_id: str
    request: pb.GenerateEmbeddingsRequest
    deliveries: int
    #: The trace the job belongs to ("" when its caller traced nothing).
    traceparent: str = ""


def request_fingerprint(request: pb.GenerateEmbeddingsRequest) -> str:
    """What makes two requests "the same job": tenant, task, document, chunk-id set, model
    and output dimensions.

    The chunk ids are part of it so that a large document sent as several requests under
    one task is several jobs, while a retried request maps onto its earlier job; the model
    so that a task sent again for another model (a collection re-embedded meanwhile) is
    embedded again.
    """
    identity = [
        request.tenant_id,
        request.task_id,
        request.document_id,
        sorted(c.chunk_id for c in request.chunks),
        request.model,
        request.dimensions if request.HasField("dimensions") else None,
    ]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()


def parse_entry(entry: StreamEntry) -> Job:
    """The job in a stream entry; INVALID_JOB if the entry is not one of ours."""
    try:
        job_id = entry.fields[b"job_id"].decode()
        request = pb.GenerateEmbeddingsRequest.FromString(entry.fields[b"request"])
    except (KeyError, UnicodeDecodeError, DecodeError) as exc:
        raise EmbeddingError(
            ErrorCode.INVALID_JOB, f"entry {entry.entry_id} is not a job: {exc!r}"
        ) from None
    traceparent = entry.fields.get(b"traceparent", b"").decode("ascii", "replace")
    return Job(entry.entry_id, job_id, request, entry.deliveries, traceparent)


class JobQueue:
    """The job stream of one key prefix."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: EmbeddingKeys,
        *,
        dedupe_ttl_s: int,
        max_backlog: int = 100_000,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.dedupe_ttl_s = dedupe_ttl_s
        self.max_backlog = max_backlog
        self._enqueue = redis.register_script(_ENQUEUE)
        self._finish = redis.register_script(_FINISH)
        self._offered: list[_Offered] = []
        #: The task sending the offered jobs, while there are any.
        self._committer: asyncio.Task[None] | None = None

    async def ensure_group(self) -> None:
        """Create the workers' group now, so jobs accepted before any worker starts wait."""
        await ensure_group(self.redis, self.keys.jobs, WORKER_GROUP)

    async def stats(self) -> QueueStats:
        """Jobs not finished (finished ones are deleted from the stream), those a worker
        holds, the age of the oldest, and the dead-lettered ones."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self.keys.jobs)
                pipe.xpending(self.keys.jobs, WORKER_GROUP)
                pipe.xrange(self.keys.jobs, count=1)
                pipe.xlen(self.keys.dead_letter)
                queued, pending, oldest, dead = await pipe.execute(raise_on_error=False)
        except RETRYABLE_ERRORS as exc:
            raise EmbeddingError(
                ErrorCode.QUEUE_UNAVAILABLE, f"job queue unavailable: {exc}"
            ) from exc
        for reply in (queued, oldest, dead):
            if isinstance(reply, Exception):
                raise EmbeddingError(ErrorCode.QUEUE_UNAVAILABLE, f"job queue unavailable: {reply}")
        # No group yet (no job accepted since Redis started): nothing is in progress.
        in_progress = 0 if isinstance(pending, Exception) else int(pending["pending"])
        oldest_age_s = 0.0
        if oldest:
            accepted_ms = int(as_text(oldest[0][0]).split("-", 1)[0])
            oldest_age_s = max(0.0, time.time() - accepted_ms / 1000)
        return QueueStats(int(queued), in_progress, oldest_age_s, int(dead))

    async def enqueue(
        self, request: pb.GenerateEmbeddingsRequest, traceparent: str = ""
    ) -> AcceptedJob:
        """Store the job (with the trace it belongs to), or find the identical one accepted
        before."""
        offered = _Offered(
            self.keys.dedupe(request_fingerprint(request)),
            (uuid.uuid4().hex, request.SerializeToString(), int(time.time() * 1000), traceparent),
            asyncio.get_running_loop().create_future(),
        )
        self._offered.append(offered)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_offered())
        created, record = await offered.answer
        if created == -1:
            raise EmbeddingError(
                ErrorCode.BACKLOG_FULL,
                f"{self.max_backlog} jobs are waiting already; retry later",
                retry_after_s=BACKLOG_RETRY_AFTER_S,
            )
        job_id, accepted_ms = record.decode().split(" ")
        return AcceptedJob(job_id, int(accepted_ms), deduplicated=not created)

    async def _commit_offered(self) -> None:
        """Send the offered jobs, a group per script call, until none is left; if this task
        is cancelled (the server stops), the calls still waiting are cancelled too."""
        try:
            while self._offered:
                await self._commit(self._next_group())
        except asyncio.CancelledError:
            for job in self._offered:
                job.answer.cancel()
            self._offered.clear()
            raise
        finally:
            self._committer = None

    def _next_group(self) -> list[_Offered]:
        """The oldest offered jobs, at most MAX_JOBS_PER_CALL and MAX_BYTES_PER_CALL of
        requests (a larger job goes alone)."""
        group: list[_Offered] = []
        size = 0
        for job in self._offered[:MAX_JOBS_PER_CALL]:
            size += len(job.args[1])
            if group and size > MAX_BYTES_PER_CALL:
                break
            group.append(job)
        del self._offered[: len(group)]
        return group

    async def _commit(self, group: list[_Offered]) -> None:
        """One script call for `group`; each caller gets its answer, or the error."""
        args: list[str | bytes | int] = [self.dedupe_ttl_s, self.max_backlog]
        for job in group:
            args += job.args
        try:
            replies = await self._enqueue(
                keys=[self.keys.jobs, *(job.dedupe_key for job in group)], args=args
            )
        except asyncio.CancelledError:
            for job in group:
                job.answer.cancel()
            raise
        except Exception as exc:  # every caller is answered; none waits forever
            error: Exception = exc
            if isinstance(exc, RETRYABLE_ERRORS):
                error = EmbeddingError(ErrorCode.QUEUE_UNAVAILABLE, f"job queue unavailable: {exc}")
                error.__cause__ = exc
            for job in group:
                if not job.answer.done():
                    job.answer.set_exception(error)
            return
        for i, job in enumerate(group):
            if not job.answer.done():  # its caller may have been cancelled meanwhile
                job.answer.set_result((int(replies[2 * i]), replies[2 * i + 1]))

    async def finish(
        self,
        *,
        entry_id: str,
        job_id: str,
        callback_queue: str,
        callback_json: bytes,
        dead_letter_reason: str = "",
        request: bytes = b"",
        deliveries: int = 0,
    ) -> bool:
        """Push the callback (once per job), optionally dead-letter, ack and delete.

        Returns whether this call pushed the callback (False: an earlier delivery did).
        """
        pushed = await self._finish(
            keys=[
                self.keys.done(job_id or entry_id),
                callback_queue or self.keys.dead_letter,
                self.keys.jobs,
                self.keys.dead_letter,
            ],
            args=[
                WORKER_GROUP,
                entry_id,
                callback_json,
                self.dedupe_ttl_s,
                dead_letter_reason,
                job_id,
                request,
                deliveries,
            ],
        )
        if pushed == -1:
            log.error(
                "callback dropped: callback_queue=%s is not a list job_id=%s",
                callback_queue,
                job_id,
            )
            return False
        return bool(pushed)
