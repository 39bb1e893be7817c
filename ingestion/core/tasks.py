"""Tasks: their state now, and their changes as they happen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.ingestion.v1 import resources_pb2
from embedpipe.task_status import TaskStatus
from ingestion import store
from ingestion.core import messages
from ingestion.core.backends import Backends
from ingestion.core.checks import not_found
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.events import parse_event, publish, task_event

#: Seconds without an event after which the task is read again: an event lost while Redis
#: reconnected must not leave a watcher waiting for ever.
RECHECK_S = 5.0


async def get_task(
    backends: Backends, tenant: str, request: pb.GetTaskRequest
) -> pb.GetTaskResponse:
    found = await store.get_task(backends.pool, tenant, request.task_id)
    if found is None:
        raise not_found(f"task {request.task_id!r}")
    return pb.GetTaskResponse(task=messages.task(found))


async def cancel_task(
    backends: Backends, tenant: str, request: pb.CancelTaskRequest
) -> pb.CancelTaskResponse:
    cancelled = await store.cancel_task(backends.pool, tenant, request.task_id)
    if cancelled is None:
        found = await store.get_task(backends.pool, tenant, request.task_id)
        if found is None:
            raise not_found(f"task {request.task_id!r}")
        raise IngestionError(
            IngestionErrorCode.FAILED_PRECONDITION,
            f"the task has ended ({found['status']})",
            field="task_id",
        )
    await publish(backends.redis, backends.keys, cancelled)
    return pb.CancelTaskResponse(task=messages.task(cancelled))


async def watch_task(
    backends: Backends, tenant: str, request: pb.WatchTaskRequest
) -> AsyncIterator[resources_pb2.TaskEvent]:
    """The task's state now, then each change, until its final status."""
    pubsub = backends.redis.pubsub()
    try:
        # Listen first, then read the state: an event published in between is not missed.
        await pubsub.subscribe(backends.keys.events(tenant))
        last = await _current(backends, tenant, request.task_id)
        if last is None:
            raise not_found(f"task {request.task_id!r}")
        yield last
        clock = asyncio.get_running_loop().time
        recheck_at = clock() + RECHECK_S
        while not TaskStatus(last.status).final:
            wait_s = max(0.0, recheck_at - clock())
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait_s)
            event = None if message is None else parse_event(message["data"])
            if event is None or event.task_id != request.task_id:
                if clock() < recheck_at:
                    continue
                event = await _current(backends, tenant, request.task_id)
                if event is None:  # deleted with its collection
                    raise not_found(f"task {request.task_id!r}")
            recheck_at = clock() + RECHECK_S
            if event == last:
                continue
            if TaskStatus(event.status).rank < TaskStatus(last.status).rank:
                continue  # a late event of an earlier step: the task never goes back
            last = event
            yield event
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2


async def _current(backends: Backends, tenant: str, task_id: str) -> resources_pb2.TaskEvent | None:
    found = await store.get_task(backends.pool, tenant, task_id)
    return None if found is None else task_event(found)
