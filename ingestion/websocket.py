"""`GET /api/v1/ws`: live task events over a WebSocket.

A client sends `{"action": "subscribe", "task_id": "..."}` for one task, or
`{"action": "subscribe", "all": true}` for every task of its tenant. Events come from the
tenant's Redis pub/sub channel, so whichever API replica a client is connected to, it gets
the events every worker publishes. On subscribing to a task the client first gets its
current state, so nothing that happened before is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from embedpipe.http.auth import tenant_of
from embedpipe.strict_json import StrictJsonError, loads
from ingestion import store
from ingestion.events import event_json, task_event
from ingestion.http import BACKENDS

log = logging.getLogger(__name__)


class _Subscription:
    """What one connection asked to hear about."""

    def __init__(self) -> None:
        self.all = False
        self.task_ids: set[str] = set()

    def wants(self, event: dict[str, Any]) -> bool:
        return self.all or event.get("task_id") in self.task_ids


async def _forward(ws: web.WebSocketResponse, pubsub: Any, wanted: _Subscription) -> None:
    async for message in pubsub.listen():
        if message.get("type") != "message":
            continue
        try:
            event = json.loads(message["data"])
        except (TypeError, ValueError):
            continue
        if wanted.wants(event):
            await ws.send_json(event)


async def _handle(
    request: web.Request, ws: web.WebSocketResponse, wanted: _Subscription, data: str
) -> None:
    try:
        command = loads(data)
    except StrictJsonError as exc:
        await ws.send_json({"type": "error", "message": f"messages must be JSON: {exc}"})
        return
    if not isinstance(command, dict) or command.get("action") not in ("subscribe", "unsubscribe"):
        await ws.send_json(
            {"type": "error", "message": 'send {"action": "subscribe", "task_id": ...}'}
        )
        return
    subscribe = command["action"] == "subscribe"
    if command.get("all") is True:
        wanted.all = subscribe
        await ws.send_json({"type": "subscribed" if subscribe else "unsubscribed", "all": True})
        return
    task_id = command.get("task_id")
    if not isinstance(task_id, str):
        await ws.send_json({"type": "error", "message": "task_id must be a string"})
        return
    if not subscribe:
        wanted.task_ids.discard(task_id)
        await ws.send_json({"type": "unsubscribed", "task_id": task_id})
        return
    # Listen first, then read the state: an event published in between is not missed.
    wanted.task_ids.add(task_id)
    task = await store.get_task(request.app[BACKENDS].pool, tenant_of(request), task_id)
    if task is None:
        wanted.task_ids.discard(task_id)
        await ws.send_json(
            {"type": "error", "status": 404, "message": "task not found", "task_id": task_id}
        )
        return
    await ws.send_json({"type": "subscribed", "task_id": task_id})
    await ws.send_json(event_json(task_event(task)))


async def events_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    wanted = _Subscription()
    backends = request.app[BACKENDS]
    pubsub = backends.redis.pubsub()
    await pubsub.subscribe(backends.keys.events(tenant_of(request)))
    forwarder = asyncio.create_task(_forward(ws, pubsub, wanted))
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await _handle(request, ws, wanted, message.data)
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await forwarder
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
    return ws
