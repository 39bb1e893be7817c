"""Task events, fanned out through Redis pub/sub so every API replica can deliver them."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis

from embedpipe.task_status import TaskStatus, progress
from ingestion.keys import IngestionKeys

log = logging.getLogger(__name__)


def task_event(task: dict[str, Any]) -> dict[str, Any]:
    """The event a WebSocket client receives for a task's current state."""
    total = int(task.get("chunks_total") or 0)
    embedded = int(task.get("chunks_embedded") or 0)
    status = task["status"]
    return {
        "type": "task",
        "task_id": task["task_id"],
        "collection_id": task["collection_id"],
        "document_id": task["document_id"],
        "status": status,
        "progress": progress(TaskStatus(status), total, embedded),
        "chunks_total": total,
        "chunks_embedded": embedded,
        "error_code": task.get("error_code"),
        "error_message": task.get("error_message"),
    }


async def publish(redis: aioredis.Redis, keys: IngestionKeys, task: dict[str, Any]) -> None:
    """Tell the task's tenant about it; a lost event must not fail the work itself."""
    try:
        await redis.publish(keys.events(task["tenant_id"]), json.dumps(task_event(task)))
    except Exception as exc:
        log.warning("event not published task_id=%s error=%s", task["task_id"], exc)
