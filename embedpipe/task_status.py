"""The statuses of an ingestion task, in the order a task goes through them: part of the
ingestion API's contract, so the service and its clients (the CLI) read them alike.

A task never goes back: `pending` → `extracting` → `chunking` → `embedding` → `storing`, then
one final status: `completed`, `unchanged` (the same content was stored already), `failed`
or `cancelled`.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"
    EXTRACTING = "extracting"
    CHUNKING = "chunking"
    EMBEDDING = "embedding"
    STORING = "storing"
    COMPLETED = "completed"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL

    @property
    def rank(self) -> int:
        """Its place in the order; the final statuses share the last place."""
        return len(IN_PROGRESS) if self.final else IN_PROGRESS.index(self)


#: The statuses a task passes through before it ends, in order.
IN_PROGRESS = (
    TaskStatus.PENDING,
    TaskStatus.EXTRACTING,
    TaskStatus.CHUNKING,
    TaskStatus.EMBEDDING,
    TaskStatus.STORING,
)
FINAL = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.UNCHANGED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)
#: Progress (percent) a status stands for; `embedding` goes from 10 to 95 with its chunks.
_PROGRESS = {
    TaskStatus.PENDING: 0,
    TaskStatus.EXTRACTING: 2,
    TaskStatus.CHUNKING: 5,
    TaskStatus.STORING: 95,
}


def progress(status: TaskStatus, chunks_total: int, chunks_embedded: int) -> int:
    """How far along a task is, in percent."""
    if status in (TaskStatus.COMPLETED, TaskStatus.UNCHANGED):
        return 100
    if status is TaskStatus.EMBEDDING and chunks_total:
        return 10 + int(85 * chunks_embedded / chunks_total)
    return _PROGRESS.get(status, 0)
