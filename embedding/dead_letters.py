"""The dead-letter stream: listing the jobs the workers gave up on, and re-driving them.

A job delivered more than `max_deliveries` times, or a stream entry that is not a job at
all, is moved to `EmbeddingKeys.dead_letter` by the worker (`_FINISH` in embedding/jobs.py)
with the fields `job_id`, `request`, `reason`, `deliveries` and `entry_id` (its id on the
job stream). A dead-lettered job already pushed its error callback and set its `done`
marker.

Re-driving puts the request back on the job stream as a fresh job, so that a worker embeds
it again and pushes a callback. One Lua script reads the dead-letter entry, adds the new job
and deletes the entry: a crash leaves the job either still dead-lettered or re-enqueued,
never both and never neither, and two operators re-driving at once re-enqueue it once.

The fresh job gets a new job id (and the entry carries `redriven_from`, the old one) rather
than keeping the old id and clearing its `done` marker: a job id then still stands for
exactly one callback, so a consumer that keys on job ids never sees an error and a success
under the same id, and the old `done` marker keeps guarding against a duplicate callback of
the old job. The request's dedupe record, if it still names the old job, is pointed at the
new one (its expiry kept), so the same request sent again maps onto the re-driven job.
The backlog limit is not applied: re-driving is an operator's decision.

Entries with reason INVALID_JOB were never readable jobs (no job id, or a request that does
not decode): there is nothing to put back, so they cannot be re-driven.
"""

from __future__ import annotations

import datetime
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError

from embedding.errors import ErrorCode
from embedding.jobs import request_fingerprint
from embedding.keys import WORKER_GROUP, EmbeddingKeys
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.redis_conn import as_text
from embedpipe.streams import ensure_group

#: A full stream entry id, `<milliseconds>-<sequence>`.
ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
_PAGE = 500

# KEYS: dead-letter stream, job stream, dedupe key of the request.
# ARGV: dead-letter entry id, new job id, accepted_ms.
# Returns {1, new entry id}, {0, ''} if the entry is gone, {-1, reason} if not re-drivable.
# The job entry has the fields `_ENQUEUE` in embedding/jobs.py writes, less the traceparent
# (the dead-letter entry keeps none: a re-driven job starts a trace of its own), plus
# redriven_from.
_REDRIVE = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return {0, ''} end
local fields = found[1][2]
local job_id, request, reason = '', '', ''
for i = 1, #fields, 2 do
  if fields[i] == 'job_id' then job_id = fields[i + 1]
  elseif fields[i] == 'request' then request = fields[i + 1]
  elseif fields[i] == 'reason' then reason = fields[i + 1] end
end
if reason == 'INVALID_JOB' or job_id == '' or request == '' then return {-1, reason} end
local entry_id = redis.call('XADD', KEYS[2], '*', 'job_id', ARGV[2], 'request', request,
                            'accepted_ms', ARGV[3], 'redriven_from', job_id)
redis.call('XDEL', KEYS[1], ARGV[1])
local record = redis.call('GET', KEYS[3])
if record and string.sub(record, 1, #job_id + 1) == job_id .. ' ' then
  redis.call('SET', KEYS[3], ARGV[2] .. ' ' .. ARGV[3], 'KEEPTTL')
end
return {1, entry_id}
"""


class BadEntryIdError(ValueError):
    """An argument that is not a stream entry id."""


def check_entry_id(entry_id: str) -> str:
    """`entry_id` if it is a full stream entry id (like 1700000000000-0)."""
    if not ENTRY_ID.fullmatch(entry_id):
        raise BadEntryIdError(
            f"{entry_id!r} is not a stream entry id (like 1700000000000-0; "
            "`python -m embedding dead-letters` lists them)"
        )
    return entry_id


@dataclass(frozen=True)
class DeadLetter:
    """One entry of the dead-letter stream."""

    entry_id: str
    job_id: str
    reason: str
    deliveries: int
    #: The job's id on the job stream when it was given up on.
    job_entry_id: str
    #: None when the entry holds no readable request.
    request: pb.GenerateEmbeddingsRequest | None

    @property
    def dead_lettered_ms(self) -> int:
        """When it was dead-lettered: the time part of its entry id."""
        return int(self.entry_id.split("-", 1)[0])

    @property
    def dead_lettered_at(self) -> str:
        """That time as ISO 8601 UTC, to the millisecond."""
        moment = datetime.datetime.fromtimestamp(self.dead_lettered_ms / 1000, datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @property
    def redrivable(self) -> bool:
        return (
            self.reason != ErrorCode.INVALID_JOB.value
            and bool(self.job_id)
            and (self.request is not None)
        )

    def as_json(self) -> dict[str, Any]:
        request = self.request
        return {
            "entry_id": self.entry_id,
            "dead_lettered_at": self.dead_lettered_at,
            "job_id": self.job_id,
            "tenant_id": request.tenant_id if request else None,
            "task_id": request.task_id if request else None,
            "document_id": request.document_id if request else None,
            "model": request.model if request else None,
            "chunks": len(request.chunks) if request else None,
            "reason": self.reason,
            "deliveries": self.deliveries,
            "job_entry_id": self.job_entry_id,
            "redrivable": self.redrivable,
        }


def parse_dead_letter(entry_id: str, fields: dict[bytes, bytes]) -> DeadLetter:
    """The dead letter in a stream entry; fields it lacks read as empty."""

    def text(name: bytes) -> str:
        return fields.get(name, b"").decode("utf-8", "replace")

    request: pb.GenerateEmbeddingsRequest | None = None
    raw = fields.get(b"request", b"")
    if raw:
        try:
            request = pb.GenerateEmbeddingsRequest.FromString(raw)
        except DecodeError:
            request = None
    deliveries = text(b"deliveries")
    return DeadLetter(
        entry_id=entry_id,
        job_id=text(b"job_id"),
        reason=text(b"reason"),
        deliveries=int(deliveries) if deliveries.isdigit() else 0,
        job_entry_id=text(b"entry_id"),
        request=request,
    )


class Outcome(StrEnum):
    REDRIVEN = "redriven"
    NOT_FOUND = "not-found"
    NOT_REDRIVABLE = "not-redrivable"


@dataclass(frozen=True)
class Redrive:
    """What became of one entry asked to be re-driven."""

    entry_id: str
    outcome: Outcome
    #: The dead job's id (empty when the entry was not found or holds none).
    old_job_id: str = ""
    #: REDRIVEN: the fresh job's id and its entry id on the job stream.
    new_job_id: str = ""
    new_entry_id: str = ""
    #: NOT_REDRIVABLE: the entry's reason (INVALID_JOB).
    reason: str = ""


class DeadLetters:
    """The dead-letter stream of one key prefix."""

    def __init__(self, redis: aioredis.Redis, keys: EmbeddingKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._redrive = redis.register_script(_REDRIVE)

    async def entries(self) -> AsyncIterator[DeadLetter]:
        """Every entry, oldest first (read in pages)."""
        start = "-"
        while True:
            page: Any = await self.redis.xrange(self.keys.dead_letter, start, "+", count=_PAGE)
            for raw_id, fields in page:
                yield parse_dead_letter(as_text(raw_id), dict(fields))
            if len(page) < _PAGE:
                return
            start = f"({as_text(page[-1][0])}"

    async def get(self, entry_id: str) -> DeadLetter | None:
        found: Any = await self.redis.xrange(
            self.keys.dead_letter, check_entry_id(entry_id), entry_id
        )
        if not found:
            return None
        raw_id, fields = found[0]
        return parse_dead_letter(as_text(raw_id), dict(fields))

    async def redrive(self, entry_id: str) -> Redrive:
        """Put the entry's job back on the job stream as a fresh job, and drop the entry."""
        letter = await self.get(entry_id)
        if letter is None:
            return Redrive(entry_id, Outcome.NOT_FOUND)
        if not letter.redrivable or letter.request is None:
            return Redrive(
                entry_id, Outcome.NOT_REDRIVABLE, old_job_id=letter.job_id, reason=letter.reason
            )
        await ensure_group(self.redis, self.keys.jobs, WORKER_GROUP)
        new_job_id = uuid.uuid4().hex
        done, detail = await self._redrive(
            keys=[
                self.keys.dead_letter,
                self.keys.jobs,
                self.keys.dedupe(request_fingerprint(letter.request)),
            ],
            args=[entry_id, new_job_id, int(time.time() * 1000)],
        )
        if done == 0:  # re-driven by someone else between our read and the script
            return Redrive(entry_id, Outcome.NOT_FOUND)
        if done == -1:
            return Redrive(
                entry_id,
                Outcome.NOT_REDRIVABLE,
                old_job_id=letter.job_id,
                reason=as_text(detail),
            )
        return Redrive(
            entry_id,
            Outcome.REDRIVEN,
            old_job_id=letter.job_id,
            new_job_id=new_job_id,
            new_entry_id=as_text(detail),
        )
