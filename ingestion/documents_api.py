"""Documents and tasks: upload (202 + task), list, get, delete; task status."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from embedpipe.http.auth import tenant_of
from embedpipe.http.json_body import read_json_object
from embedpipe.strict_json import StrictJsonError, loads
from embedpipe.task_status import TaskStatus
from ingestion import store
from ingestion.collections_api import check_id
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.events import publish, task_event
from ingestion.extract import detect_format, extract_text
from ingestion.http import KEYS, POOL, REDIS, SETTINGS, check_storable, not_found
from ingestion.jobs import content_hash, enqueue_job

READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None
    content_type: str | None
    document_id: str | None
    metadata: dict[str, Any]


def _too_large(limit: int) -> IngestionError:
    return IngestionError(
        IngestionErrorCode.PAYLOAD_TOO_LARGE, f"the document is larger than {limit} bytes"
    )


def _metadata(value: object) -> dict[str, Any]:
    if isinstance(value, str):  # a multipart form field: JSON text
        try:
            value = loads(value)
        except StrictJsonError as exc:
            raise IngestionError(
                IngestionErrorCode.INVALID_ARGUMENT, str(exc), field="metadata"
            ) from None
    if not isinstance(value, dict):
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, "must be a JSON object", field="metadata"
        )
    check_storable(value, "metadata")
    return value


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        data += chunk
        if len(data) > limit:
            raise _too_large(limit)
    return bytes(data)


async def _read_multipart(request: web.Request, limit: int) -> Upload:
    reader = await request.multipart()
    data: bytes | None = None
    filename = content_type = document_id = None
    metadata: dict[str, Any] = {}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            filename = part.filename
            content_type = part.headers.get("Content-Type")
            data = await _read_part(part, limit)
        elif part.name == "document_id":
            document_id = (await part.text()).strip() or None
        elif part.name == "metadata":
            metadata = _metadata(await part.text())
    if data is None:
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, "a multipart 'file' part is required", field="file"
        )
    return Upload(data, filename, content_type, document_id, metadata)


async def _read_json_text(request: web.Request, limit: int) -> Upload:
    body = await read_json_object(request)
    text = body.get("text")
    if not isinstance(text, str):
        raise IngestionError(IngestionErrorCode.INVALID_ARGUMENT, "must be a string", field="text")
    check_storable(text, "text")
    data = text.encode()
    if len(data) > limit:
        raise _too_large(limit)
    filename = body.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, "must be a string", field="filename"
        )
    document_id = body.get("document_id")
    return Upload(
        data,
        filename or "document.txt",
        "text/plain",
        None if document_id is None else str(document_id),
        _metadata(body.get("metadata", {})),
    )


async def upload_document(request: web.Request) -> web.Response:
    """Accept a document: 202 with its task. Format and extraction are checked now, so an
    unsupported type (415) or a file with nothing to read (422) is refused at once."""
    app = request.app
    settings = app[SETTINGS]
    tenant = tenant_of(request)
    collection_id = request.match_info["collection_id"]
    collection = await store.get_collection(app[POOL], tenant, collection_id)
    if collection is None:
        raise not_found(f"collection {collection_id!r}")
    limit = settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise _too_large(limit)
    try:
        if request.content_type.startswith("multipart/"):
            upload = await _read_multipart(request, limit)
        else:
            upload = await _read_json_text(request, limit)
    except (ValueError, AssertionError, HttpProcessingError) as exc:  # broken multipart
        if isinstance(exc, IngestionError):
            raise
        raise IngestionError(
            IngestionErrorCode.INVALID_ARGUMENT, f"unreadable request body: {exc}", field="body"
        ) from None
    check_storable(upload.filename, "filename")
    document_id = check_id(upload.document_id or uuid.uuid4().hex, "document_id")
    fmt = detect_format(upload.filename, upload.content_type, upload.data)
    task = await store.start_task(
        app[POOL], tenant, collection_id, document_id, uuid.uuid4().hex,
        filename=upload.filename, content_type=upload.content_type, metadata=upload.metadata,
    )  # fmt: skip
    await publish(app[REDIS], app[KEYS], task)
    task = (
        await store.set_task_status(app[POOL], tenant, task["task_id"], TaskStatus.EXTRACTING)
        or task
    )
    await publish(app[REDIS], app[KEYS], task)
    try:
        extracted = await asyncio.to_thread(extract_text, upload.data, fmt)
    except IngestionError as exc:
        failed = await store.fail_task(
            app[POOL], tenant, task["task_id"], error_code=exc.code.value, error_message=exc.message
        )
        await publish(app[REDIS], app[KEYS], failed or task)
        raise
    digest = content_hash(extracted, collection)
    try:
        await enqueue_job(app[REDIS], app[KEYS], task, extracted, digest, upload.metadata)
    except BaseException:
        # Not queued: the task must not wait forever (the client gets a 503 to retry).
        await store.fail_task(
            app[POOL], tenant, task["task_id"],
            error_code=IngestionErrorCode.UNAVAILABLE.value, error_message="could not be queued",
        )  # fmt: skip
        raise
    return web.json_response(
        {
            "task_id": task["task_id"],
            "document_id": document_id,
            "collection_id": collection_id,
            "status": task["status"],
        },
        status=202,
    )


async def list_documents(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    collection_id = request.match_info["collection_id"]
    if await store.get_collection(request.app[POOL], tenant, collection_id) is None:
        raise not_found(f"collection {collection_id!r}")
    found = await store.list_documents(request.app[POOL], tenant, collection_id)
    return web.json_response({"documents": found})


async def get_document(request: web.Request) -> web.Response:
    collection_id = request.match_info["collection_id"]
    document_id = request.match_info["document_id"]
    found = await store.get_document(
        request.app[POOL], tenant_of(request), collection_id, document_id
    )
    if found is None:
        raise not_found(f"document {document_id!r}")
    return web.json_response(found)


async def delete_document(request: web.Request) -> web.Response:
    collection_id = request.match_info["collection_id"]
    document_id = request.match_info["document_id"]
    deleted = await store.delete_document(
        request.app[POOL], tenant_of(request), collection_id, document_id
    )
    if not deleted:
        raise not_found(f"document {document_id!r}")
    return web.Response(status=204)


async def get_task(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    found = await store.get_task(request.app[POOL], tenant_of(request), task_id)
    if found is None:
        raise not_found(f"task {task_id!r}")
    event = task_event(found)
    return web.json_response({**found, "progress": event["progress"]})
