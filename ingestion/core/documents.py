"""Documents: upload (answered at once with a task), list, get, delete."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from embedpipe import tracing
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.protojson import struct_object
from embedpipe.task_status import TaskStatus
from ingestion import store
from ingestion.core import messages
from ingestion.core.backends import Backends
from ingestion.core.checks import check_id, check_metadata, check_storable, invalid, not_found
from ingestion.core.pages import page_of
from ingestion.errors import IngestionError, IngestionErrorCode
from ingestion.events import publish
from ingestion.extract import detect_format, extract_text
from ingestion.jobs import content_hash, enqueue_job

#: The name and type of a document sent as `text`.
TEXT_FILENAME = "document.txt"
TEXT_CONTENT_TYPE = "text/plain"


class FileBuffer:
    """A file's bytes as they arrive, refused once past the upload limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.parts = 0

    def add(self, part: bytes) -> None:
        self.data += part
        self.parts += 1
        if len(self.data) > self.limit:
            raise too_large(self.limit)


def too_large(limit: int) -> IngestionError:
    return IngestionError(
        IngestionErrorCode.PAYLOAD_TOO_LARGE, f"the document is larger than {limit} bytes"
    )


async def collection_for_upload(
    backends: Backends, tenant: str, collection_id: str
) -> dict[str, Any]:
    """The collection an upload goes to: checked before its bytes are read."""
    found = await store.get_collection(backends.pool, tenant, collection_id)
    if found is None:
        raise not_found(f"collection {collection_id!r}")
    return found


async def upload_document(
    backends: Backends,
    tenant: str,
    collection: dict[str, Any],
    header: pb.DocumentHeader,
    file: FileBuffer | None,
) -> pb.UploadDocumentResponse:
    """Accept a document and answer with its task. Format and extraction are checked now,
    so an unsupported type or a file with nothing to read is refused at once."""
    if header.HasField("text"):
        if file is not None and file.parts:
            raise invalid("text", "send the document as text or as file parts, not both")
        check_storable(header.text, "text")
        data = header.text.encode()
        limit = backends.settings.max_upload_bytes
        if len(data) > limit:
            raise too_large(limit)
        filename: str | None = header.filename or TEXT_FILENAME
        content_type: str | None = TEXT_CONTENT_TYPE
    elif file is not None:
        data = bytes(file.data)
        filename = header.filename if header.HasField("filename") else None
        content_type = header.content_type if header.HasField("content_type") else None
    else:
        raise invalid("text", "must be a string (or the document sent as file parts)")
    check_storable(filename, "filename")
    check_storable(content_type, "content_type")
    metadata = struct_object(header.metadata)
    check_metadata(metadata, "metadata")
    document_id = check_id(header.document_id or uuid.uuid4().hex, "document_id")
    fmt = detect_format(filename, content_type, data)
    task = await _start(backends, tenant, collection, document_id, filename, content_type, metadata)
    try:
        with tracing.span("extract", attributes={"document.format": fmt.value}):
            extracted = await asyncio.to_thread(extract_text, data, fmt)
    except IngestionError as exc:
        failed = await store.fail_task(
            backends.pool, tenant, task["task_id"],
            error_code=exc.code.value, error_message=exc.message,
        )  # fmt: skip
        await publish(backends.redis, backends.keys, failed or task)
        raise
    digest = content_hash(extracted, collection)
    try:
        await enqueue_job(backends.redis, backends.keys, task, extracted, digest, metadata)
    except BaseException:
        # Not queued: the task must not wait forever (the client gets UNAVAILABLE to retry).
        await store.fail_task(
            backends.pool, tenant, task["task_id"],
            error_code=IngestionErrorCode.UNAVAILABLE.value, error_message="could not be queued",
        )  # fmt: skip
        raise
    return pb.UploadDocumentResponse(
        task_id=task["task_id"],
        document_id=document_id,
        collection_id=collection["collection_id"],
        status=task["status"],
    )


async def _start(
    backends: Backends,
    tenant: str,
    collection: dict[str, Any],
    document_id: str,
    filename: str | None,
    content_type: str | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """A new task for the document, told to its watchers, now extracting."""
    task = await store.start_task(
        backends.pool, tenant, collection["collection_id"], document_id, uuid.uuid4().hex,
        filename=filename, content_type=content_type, metadata=metadata,
    )  # fmt: skip
    await publish(backends.redis, backends.keys, task)
    extracting = await store.set_task_status(
        backends.pool, tenant, task["task_id"], TaskStatus.EXTRACTING
    )
    await publish(backends.redis, backends.keys, extracting or task)
    return extracting or task


async def list_documents(
    backends: Backends, tenant: str, request: pb.ListDocumentsRequest
) -> pb.ListDocumentsResponse:
    page = page_of(request)
    if await store.get_collection(backends.pool, tenant, request.collection_id) is None:
        raise not_found(f"collection {request.collection_id!r}")
    rows = await store.list_documents(
        backends.pool, tenant, request.collection_id, after=page.after, limit=page.fetch_size
    )
    return pb.ListDocumentsResponse(
        documents=[messages.document(row) for row in rows[: page.size]],
        next_page_token=page.next_token(rows, "document_id"),
    )


async def get_document(
    backends: Backends, tenant: str, request: pb.GetDocumentRequest
) -> pb.GetDocumentResponse:
    found = await store.get_document(
        backends.pool, tenant, request.collection_id, request.document_id
    )
    if found is None:
        raise not_found(f"document {request.document_id!r}")
    return pb.GetDocumentResponse(document=messages.document(found))


async def delete_document(
    backends: Backends, tenant: str, request: pb.DeleteDocumentRequest
) -> pb.DeleteDocumentResponse:
    deleted = await store.delete_document(
        backends.pool, tenant, request.collection_id, request.document_id
    )
    if not deleted:
        raise not_found(f"document {request.document_id!r}")
    return pb.DeleteDocumentResponse()
