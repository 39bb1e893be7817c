"""The state of each upload of `embedpipe ingest`, fed by task events and polls.

Events may come before the upload that caused them has been answered (the API publishes
`pending` before it replies), may repeat, and a poll may be older than an event already
seen: the tracker keeps early events until their task id is known and never moves a task
backwards or out of a final state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from embedpipe.cli.files import SourceFile
from embedpipe.task_status import TaskStatus

#: Before the API has a task: the file waits for an upload slot, or is being uploaded.
QUEUED, UPLOADING = "queued", "uploading"
#: The order a task goes through; a status is never replaced by an earlier one. The API's
#: statuses (embedpipe/task_status.py) come after our own two.
RANK = {QUEUED: 0, UPLOADING: 0, **{str(status): status.rank + 1 for status in TaskStatus}}
FINAL = frozenset(str(status) for status in TaskStatus if status.final)
#: Events kept for task ids not known yet (other clients' tasks of the tenant among them).
MAX_EARLY_EVENTS = 10_000


@dataclass
class TaskState:
    """One file's upload and task, as far as we know."""

    source: SourceFile
    task_id: str | None = None
    status: str = QUEUED
    progress: int = 0
    chunks_total: int = 0
    chunks_embedded: int = 0
    error_code: str | None = None
    error_message: str | None = None
    updated: float = field(default_factory=time.monotonic)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.source.path),
            "document_id": self.source.document_id,
            "task_id": self.task_id,
            "status": self.status,
            "progress": self.progress,
            "chunks_total": self.chunks_total,
            "chunks_embedded": self.chunks_embedded,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


class Listener(Protocol):
    """Told about every change of a task (the progress display)."""

    def changed(self, state: TaskState) -> None: ...


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class Tracker:
    """The states of all uploads; `changed` is set whenever one of them changes."""

    def __init__(self, sources: Sequence[SourceFile], listener: Listener) -> None:
        self.states = [TaskState(source) for source in sources]
        self.changed = asyncio.Event()
        self._listener = listener
        self._by_task: dict[str, TaskState] = {}
        self._early: dict[str, Mapping[str, Any]] = {}

    @property
    def done(self) -> bool:
        return all(state.final for state in self.states)

    def unfinished(self) -> list[TaskState]:
        """Accepted tasks not in a final state."""
        return [s for s in self.states if s.task_id is not None and not s.final]

    def count(self, status: str) -> int:
        return sum(1 for state in self.states if state.status == status)

    def accepted(self, state: TaskState, answer: Mapping[str, Any]) -> None:
        """The API took the file: `answer` is its 202 body."""
        task_id = str(answer["task_id"])
        state.task_id = task_id
        self._by_task[task_id] = state
        self._update(state, {"status": answer.get("status", TaskStatus.PENDING)})
        if early := self._early.pop(task_id, None):
            self._update(state, early)

    def uploading(self, state: TaskState) -> None:
        """The file's upload has begun."""
        self._update(state, {"status": UPLOADING})

    def refused(self, state: TaskState, code: str, message: str) -> None:
        """The file was refused at once (413, 415, 422, ...) or could not be read."""
        self._update(
            state, {"status": TaskStatus.FAILED, "error_code": code, "error_message": message}
        )

    def apply(self, event: Mapping[str, Any]) -> None:
        """A task event from the socket, or a task from a poll."""
        task_id = event.get("task_id")
        if not isinstance(task_id, str) or event.get("status") not in RANK:
            return
        state = self._by_task.get(task_id)
        if state is not None:
            self._update(state, event)
            return
        kept = self._early.get(task_id)
        if kept is None or RANK[str(event["status"])] >= RANK[str(kept["status"])]:
            self._early.pop(task_id, None)
            self._early[task_id] = event
            if len(self._early) > MAX_EARLY_EVENTS:
                del self._early[next(iter(self._early))]

    def _update(self, state: TaskState, event: Mapping[str, Any]) -> None:
        status = str(event.get("status"))
        if state.final or status not in RANK or RANK[status] < RANK[state.status]:
            return
        progress = 100 if status in FINAL else _int(event.get("progress"), state.progress)
        embedded = _int(event.get("chunks_embedded"), state.chunks_embedded)
        if status == state.status:  # an older poll must not undo a newer event
            progress, embedded = max(progress, state.progress), max(embedded, state.chunks_embedded)
        state.status = status
        state.progress = progress
        state.chunks_total = _int(event.get("chunks_total"), state.chunks_total)
        state.chunks_embedded = embedded
        state.error_code = event.get("error_code") or state.error_code
        state.error_message = event.get("error_message") or state.error_message
        state.updated = time.monotonic()
        self._listener.changed(state)
        self.changed.set()

    async def wait_changed(self, timeout_s: float) -> None:
        """Until some task changes, or `timeout_s` passes."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.changed.wait()
        except TimeoutError:
            return
        self.changed.clear()
