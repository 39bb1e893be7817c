"""`embedpipe ingest`: upload files and folders into a collection and follow their tasks.

The event socket is opened and subscribed to all of the tenant's tasks before the first
upload, so no event is missed; events that arrive before their upload is answered are kept
until the task id is known. If the socket cannot be opened or drops, the unfinished tasks
are polled instead; with a live socket, a task silent for a while is polled too (pub/sub
delivers at most once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

from embedpipe.cli.api import ApiClient, ApiError, CliError
from embedpipe.cli.files import Skipped, discover
from embedpipe.cli.progress import View, choose_view, name_of
from embedpipe.cli.tasks import TaskState, Tracker
from embedpipe.task_status import TaskStatus

#: The final statuses, in the order the summary counts them.
OUTCOMES = (TaskStatus.COMPLETED, TaskStatus.UNCHANGED, TaskStatus.FAILED)
SUBSCRIBE_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.5
#: With a live socket, a task without news for this long is polled.
SILENT_TASK_POLL_S = 10.0
#: Upload errors as task error codes (the HTTP body names 422 UNPROCESSABLE_ENTITY).
UPLOAD_ERROR_CODES = {413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 422: "UNPROCESSABLE"}


@dataclass(frozen=True)
class IngestOptions:
    paths: Sequence[str]
    collection: str
    create: bool
    concurrency: int
    json_output: bool


def collection_path(collection: str) -> str:
    return f"/collections/{quote(collection, safe='')}"


async def ensure_collection(client: ApiClient, collection: str) -> bool:
    """Make sure the collection exists; True if this call created it."""
    try:
        await client.call("GET", collection_path(collection))
        return False
    except ApiError as exc:
        if exc.status != 404:
            raise
    try:
        await client.call("POST", "/collections", json={"collection_id": collection})
    except ApiError as exc:
        if exc.status != 409:  # created meanwhile by someone else
            raise
        return False
    return True


def _collection_note(collection: str, created: bool, asked: bool) -> str | None:
    if created:
        return (
            f"created collection {collection!r}"
            if asked
            else f"collection {collection!r} did not exist; created it"
        )
    return f"collection {collection!r} exists already; adding to it" if asked else None


async def _subscribe(client: ApiClient) -> aiohttp.ClientWebSocketResponse | None:
    """The event socket, subscribed to all tasks; None if that is not possible now."""
    try:
        socket = await client.events()
    except ApiError as exc:
        if exc.status == 401:
            raise
        return None
    except CliError:
        return None
    try:
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            await socket.send_json({"action": "subscribe", "all": True})
            while (answer := await socket.receive_json()).get("type") != "error":
                if answer.get("type") == "subscribed":
                    return socket
    except (TimeoutError, aiohttp.ClientError, TypeError, ValueError, AttributeError):
        pass
    await socket.close()
    return None


async def _listen(socket: aiohttp.ClientWebSocketResponse, tracker: Tracker) -> None:
    """Apply task events until the socket closes or fails."""
    with contextlib.suppress(aiohttp.ClientError, ConnectionError):
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                event = json.loads(message.data)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") == "task":
                tracker.apply(event)


async def _upload(client: ApiClient, tracker: Tracker, state: TaskState, collection: str) -> None:
    """Upload one file; a refusal at once (413, 415, 422, ...) fails its task."""
    source = state.source
    tracker.uploading(state)
    try:
        data = await asyncio.to_thread(source.path.read_bytes)
    except OSError as exc:
        tracker.refused(state, "UNREADABLE", exc.strerror or str(exc))
        return

    def form() -> aiohttp.FormData:
        built = aiohttp.FormData()
        built.add_field("file", data, filename=source.path.name, content_type=source.content_type)
        built.add_field("document_id", source.document_id)
        return built

    try:
        answer = await client.call("POST", f"{collection_path(collection)}/documents", form=form)
    except ApiError as exc:
        if exc.status in (401, 404):
            raise
        tracker.refused(state, UPLOAD_ERROR_CODES.get(exc.status, exc.code), exc.detail)
        return
    tracker.accepted(state, answer)


async def _upload_all(client: ApiClient, tracker: Tracker, options: IngestOptions) -> None:
    semaphore = asyncio.Semaphore(options.concurrency)

    async def one(state: TaskState) -> None:
        async with semaphore:
            await _upload(client, tracker, state, options.collection)

    # A fatal error (401, 404, unreachable) cancels the other uploads and ends the command.
    try:
        async with asyncio.TaskGroup() as group:
            for state in tracker.states:
                group.create_task(one(state))
    except ExceptionGroup as failure:
        raise failure.exceptions[0] from None


async def _poll(client: ApiClient, tracker: Tracker, silent_s: float) -> None:
    """Fetch the unfinished tasks that have had no news for `silent_s`."""
    now = time.monotonic()
    for state in tracker.unfinished():
        if now - state.updated >= silent_s and state.task_id is not None:
            tracker.apply(await client.call("GET", f"/tasks/{quote(state.task_id, safe='')}"))


async def _follow(
    client: ApiClient,
    tracker: Tracker,
    view: View,
    uploads: asyncio.Task[None],
    listener: asyncio.Task[None] | None,
) -> None:
    """Until every task is final: events from the socket, polls where they are missing."""
    if listener is None:
        view.note("no event socket; following the tasks by polling")
    warned = listener is None
    while not tracker.done:
        if uploads.done():
            uploads.result()  # a fatal upload error (401, 404, unreachable) ends it all
        live = listener is not None and not listener.done()
        if not live and not warned:
            view.note("the event socket closed; following the tasks by polling")
            warned = True
        await tracker.wait_changed(1.0 if live else POLL_INTERVAL_S)
        view.refresh()
        await _poll(client, tracker, SILENT_TASK_POLL_S if live else 0.0)
    await uploads


async def _run_tasks(client: ApiClient, tracker: Tracker, view: View, opts: IngestOptions) -> None:
    socket = await _subscribe(client)
    listener = asyncio.create_task(_listen(socket, tracker)) if socket else None
    uploads = asyncio.create_task(_upload_all(client, tracker, opts))
    try:
        await _follow(client, tracker, view, uploads, listener)
    finally:
        helpers = [task for task in (uploads, listener) if task is not None]
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)  # ended, errors retrieved
        if socket is not None:
            await socket.close()


def summary(
    tracker: Tracker, skipped: Sequence[Skipped], collection: str, created: bool
) -> dict[str, Any]:
    """The outcome of an ingest, as `--json` prints it."""
    return {
        "collection_id": collection,
        "collection_created": created,
        **{str(status): tracker.count(status) for status in OUTCOMES},
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in skipped],
        "tasks": [state.to_json() for state in tracker.states],
    }


def print_summary(tracker: Tracker, skipped: Sequence[Skipped], out: TextIO) -> None:
    counts = ", ".join(f"{tracker.count(s)} {s}" for s in OUTCOMES)
    print(f"\n{counts}, {len(skipped)} skipped", file=out)
    failed = [state for state in tracker.states if state.status == TaskStatus.FAILED]
    for state in failed:
        code, message = state.error_code or "ERROR", state.error_message or "no details"
        print(f"  failed  {name_of(state)}: {code}: {message}", file=out)
    out.flush()


async def run_ingest(client: ApiClient, options: IngestOptions, out: TextIO) -> int:
    """Upload, follow, summarise; 0 if no file failed, else 1."""
    sources, skipped = discover(options.paths)
    created = await ensure_collection(client, options.collection)
    view = choose_view(out, options.json_output)
    tracker = Tracker(sources, view)
    if note := _collection_note(options.collection, created, options.create):
        view.note(note)
    for item in skipped:
        view.note(f"skipped {item.path}: {item.reason}")
    if not sources:
        view.note("no files to upload")
    view.start(tracker.states)
    try:
        if sources:
            await _run_tasks(client, tracker, view, options)
    finally:
        view.close()
    if options.json_output:
        json.dump(summary(tracker, skipped, options.collection, created), out, indent=2)
        print(file=out, flush=True)
    else:
        print_summary(tracker, skipped, out)
    return 1 if tracker.count(TaskStatus.FAILED) else 0
