"""Task events, fanned out through Redis pub/sub so every API replica can deliver them.

An event is a `TaskEvent` (protos/embedpipe/ingestion/v1/resources.proto) in its JSON form
with `"type": "task"`: what the WebSocket sends as it is, and WatchTask reads back.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis

from embedpipe.ingestion.v1 import resources_pb2 as pb
from embedpipe.protojson import JsonFieldError, from_json, to_json
from embedpipe.task_status import TaskStatus, progress
from ingestion.keys import IngestionKeys

log = logging.getLogger(__name__)

EVENT_TYPE = "task"


def task_event(task: dict[str, Any]) -> pb.TaskEvent:
    """A task's current state, from its row."""
    total = int(task.get("chunks_total") or 0)
    embedded = int(task.get("chunks_embedded") or 0)
    event = pb.TaskEvent(
        task_id=task["task_id"],
        collection_id=task["collection_id"],
        document_id=task["document_id"],
        status=task["status"],
        progress=progress(TaskStatus(task["status"]), total, embedded),
        chunks_total=total,
        chunks_embedded=embedded,
    )
    if task.get("error_code") is not None:
        event.error_code = task["error_code"]
    if task.get("error_message") is not None:
        event.error_message = task["error_message"]
    return event


def event_json(event: pb.TaskEvent) -> dict[str, Any]:
    """What a WebSocket client receives for an event."""
    return {"type": EVENT_TYPE, **to_json(event)}


def parse_event(data: bytes | str) -> pb.TaskEvent | None:
    """A published event, or None for anything else on the channel."""
    try:
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("type") != EVENT_TYPE:
            return None
        return from_json(body, pb.TaskEvent)
    except (ValueError, JsonFieldError):
        return None


async def publish(redis: aioredis.Redis, keys: IngestionKeys, task: dict[str, Any]) -> None:
    """Tell the task's tenant about it; a lost event must not fail the work itself."""
    try:
        payload = json.dumps(event_json(task_event(task)))
        await redis.publish(keys.events(task["tenant_id"]), payload)
    except Exception as exc:
        log.warning("event not published task_id=%s error=%s", task["task_id"], exc)
