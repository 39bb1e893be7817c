"""The HTTP front of the ingestion API: each route reads its request message (path, query
and JSON body, by the protos' JSON mapping), calls the core and writes the answer's JSON.
Only the multipart form of an upload is read here by hand: it has no proto form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf.message import Message

from embedpipe.http.auth import tenant_of
from embedpipe.http.json_body import read_json_object
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.protojson import from_json, struct_of, to_json
from embedpipe.strict_json import StrictJsonError, loads
from ingestion.core import collections, documents, search, tasks
from ingestion.core.backends import Backends
from ingestion.core.checks import invalid
from ingestion.core.documents import FileBuffer, too_large
from ingestion.http import BACKENDS

M = TypeVar("M", bound=Message)
READ_CHUNK_BYTES = 64 * 1024


def _backends(request: web.Request) -> Backends:
    return request.app[BACKENDS]


def _message(request: web.Request, message_type: type[M], body: Mapping[str, Any] = {}) -> M:
    """The request message: the body's fields, the query's, and the path's (which win)."""
    return from_json({**body, **request.query, **request.match_info}, message_type)


async def _json_message(request: web.Request, message_type: type[M]) -> M:
    return _message(request, message_type, await read_json_object(request))


def _json(message: Message, status: int = 200) -> web.Response:
    return web.json_response(to_json(message), status=status)


async def create_collection(request: web.Request) -> web.Response:
    message = await _json_message(request, pb.CreateCollectionRequest)
    reply = await collections.create_collection(_backends(request), tenant_of(request), message)
    return _json(reply.collection, 201)


async def get_collection(request: web.Request) -> web.Response:
    message = _message(request, pb.GetCollectionRequest)
    reply = await collections.get_collection(_backends(request), tenant_of(request), message)
    return _json(reply.collection)


async def list_collections(request: web.Request) -> web.Response:
    message = _message(request, pb.ListCollectionsRequest)
    return _json(
        await collections.list_collections(_backends(request), tenant_of(request), message)
    )


async def delete_collection(request: web.Request) -> web.Response:
    message = _message(request, pb.DeleteCollectionRequest)
    await collections.delete_collection(_backends(request), tenant_of(request), message)
    return web.Response(status=204)


async def upload_document(request: web.Request) -> web.Response:
    """202 with the document's task: a multipart form with a `file` part (and optional
    `document_id` and `metadata` parts), or a JSON DocumentHeader with `text`."""
    backends, tenant = _backends(request), tenant_of(request)
    collection_id = request.match_info["collection_id"]
    collection = await documents.collection_for_upload(backends, tenant, collection_id)
    limit = backends.settings.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise too_large(limit)
    file: FileBuffer | None = None
    if request.content_type.startswith("multipart/"):
        try:
            header, file = await _read_multipart(request, limit)
        except (ValueError, AssertionError, HttpProcessingError) as exc:  # broken multipart
            raise invalid("body", f"unreadable request body: {exc}") from None
    else:
        header = await _json_message(request, pb.DocumentHeader)
    header.collection_id = collection_id
    reply = await documents.upload_document(backends, tenant, collection, header, file)
    return _json(reply, 202)


async def _read_multipart(request: web.Request, limit: int) -> tuple[pb.DocumentHeader, FileBuffer]:
    reader = await request.multipart()
    header = pb.DocumentHeader()
    file: FileBuffer | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            if part.filename is not None:
                header.filename = part.filename
            if content_type := part.headers.get("Content-Type"):
                header.content_type = content_type
            file = FileBuffer(limit)
            while chunk := await part.read_chunk(READ_CHUNK_BYTES):
                file.add(chunk)
        elif part.name == "document_id":
            if document_id := (await part.text()).strip():
                header.document_id = document_id
        elif part.name == "metadata":
            header.metadata.CopyFrom(struct_of(_json_object(await part.text(), "metadata")))
    if file is None:
        raise invalid("file", "a multipart 'file' part is required")
    return header, file


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = loads(text)
    except StrictJsonError as exc:
        raise invalid(field, str(exc)) from None
    if not isinstance(value, dict):
        raise invalid(field, "must be a JSON object")
    return value


async def list_documents(request: web.Request) -> web.Response:
    message = _message(request, pb.ListDocumentsRequest)
    return _json(await documents.list_documents(_backends(request), tenant_of(request), message))


async def get_document(request: web.Request) -> web.Response:
    message = _message(request, pb.GetDocumentRequest)
    reply = await documents.get_document(_backends(request), tenant_of(request), message)
    return _json(reply.document)


async def delete_document(request: web.Request) -> web.Response:
    message = _message(request, pb.DeleteDocumentRequest)
    await documents.delete_document(_backends(request), tenant_of(request), message)
    return web.Response(status=204)


async def get_task(request: web.Request) -> web.Response:
    message = _message(request, pb.GetTaskRequest)
    reply = await tasks.get_task(_backends(request), tenant_of(request), message)
    return _json(reply.task)


async def search_collection(request: web.Request) -> web.Response:
    message = await _json_message(request, pb.SearchRequest)
    return _json(await search.search(_backends(request), tenant_of(request), message))
