"""The HTTP front of the ingestion API: its routes, each the HTTP form of an RPC of
`IngestionService`, served and described from this one table (embedpipe/http/proto_routes.py).
Only the multipart form of an upload is read here by hand: it has no proto form."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf.message import Message

from embedpipe.http.auth import tenant_of
from embedpipe.http.json_body import read_json_object
from embedpipe.http.proto_routes import Call, ProtoRoute, read_message, rpc
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.protojson import struct_of, to_json
from embedpipe.strict_json import StrictJsonError, loads
from ingestion.core import collections, documents, reembed, search, tasks
from ingestion.core.backends import Backends
from ingestion.core.checks import invalid
from ingestion.core.documents import FileBuffer, too_large
from ingestion.http import BACKENDS

READ_CHUNK_BYTES = 64 * 1024
SERVICE = pb.DESCRIPTOR.services_by_name["IngestionService"]
UPLOAD_MEDIA_TYPES = (
    "text/plain",
    "text/markdown",
    "text/html",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
)


def _core(operation: Callable[[Backends, str, Any], Awaitable[Message]]) -> Call:
    """A core operation, called with the app's backends and the request's tenant."""

    async def call(request: web.Request, message: Any) -> Message:
        return await operation(request.app[BACKENDS], tenant_of(request), message)

    return call


async def upload_document(request: web.Request) -> web.Response:
    """202 with the document's task: a multipart form with a `file` part (and optional
    `document_id` and `metadata` parts), or a JSON DocumentHeader with `text`."""
    backends, tenant = request.app[BACKENDS], tenant_of(request)
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
        body = await read_json_object(request)
        header = read_message(request, pb.DocumentHeader, body)
    header.collection_id = collection_id
    reply = await documents.upload_document(backends, tenant, collection, header, file)
    return web.json_response(to_json(reply), status=202)


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


NO_COLLECTION = "No such collection for this tenant."
NO_DOCUMENT = "No such document in this tenant's collection."
NOT_JSON = "Content-Type is not application/json."
COLLECTIONS = "/api/v1/collections"
COLLECTION = COLLECTIONS + "/{collection_id}"
DOCUMENT = COLLECTION + "/documents/{document_id}"

ROUTES = (
    ProtoRoute(
        "POST", COLLECTIONS, rpc(SERVICE, "CreateCollection"),
        _core(collections.create_collection), status=201, answer="collection",
        required=("collection_id",), tag="collections",
        errors={
            400: "A bad field, or a model the embedding server does not serve.",
            409: "The tenant has a collection of that collection_id already.",
            413: "", 415: NOT_JSON, 503: "",
        },
    ),
    ProtoRoute(
        "GET", COLLECTIONS, rpc(SERVICE, "ListCollections"),
        _core(collections.list_collections), tag="collections",
        errors={400: "A page_size outside 1-1000, or a page_token this API did not give."},
    ),
    ProtoRoute(
        "GET", COLLECTION, rpc(SERVICE, "GetCollection"), _core(collections.get_collection),
        answer="collection", tag="collections", errors={404: NO_COLLECTION},
    ),
    ProtoRoute(
        "DELETE", COLLECTION, rpc(SERVICE, "DeleteCollection"),
        _core(collections.delete_collection), status=204, tag="collections",
        errors={404: NO_COLLECTION},
    ),
    ProtoRoute(
        "POST", COLLECTION + "/reembed", rpc(SERVICE, "ReembedCollection"),
        _core(reembed.reembed_collection), status=202, answer="task", required=("model",),
        tag="collections",
        errors={
            400: "No model, a model the embedding server does not serve, the collection's "
            "own, or one whose input window is smaller than the collection's chunks.",
            404: NO_COLLECTION,
            409: "The collection is being re-embedded already.",
            413: "", 415: NOT_JSON, 503: "",
        },
    ),
    ProtoRoute(
        "POST", COLLECTION + "/documents", rpc(SERVICE, "UploadDocument"),
        handler=upload_document, status=202, body_message=pb.DocumentHeader,
        tag="documents",
        errors={
            400: "A bad document_id or metadata, no `file` part, or no `text` string.",
            404: NO_COLLECTION,
            413: "The document is over INGESTION_MAX_UPLOAD_BYTES.",
            415: "A file type that is not ingested (e.g. an image or a zip), or a "
            "body that is neither multipart/form-data nor application/json.",
            422: "A supported type with nothing to extract: empty, corrupt, "
            "encrypted, or not what its name claims.",
        },
        extra_content={
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/DocumentUpload"},
                "encoding": {"file": {"contentType": ", ".join(UPLOAD_MEDIA_TYPES)}},
            }
        },
    ),
    ProtoRoute(
        "GET", COLLECTION + "/documents", rpc(SERVICE, "ListDocuments"),
        _core(documents.list_documents), tag="documents",
        errors={
            400: "A page_size outside 1-1000, or a page_token this API did not give.",
            404: NO_COLLECTION,
        },
    ),
    ProtoRoute(
        "GET", DOCUMENT, rpc(SERVICE, "GetDocument"), _core(documents.get_document),
        answer="document", tag="documents", errors={404: NO_DOCUMENT},
    ),
    ProtoRoute(
        "DELETE", DOCUMENT, rpc(SERVICE, "DeleteDocument"), _core(documents.delete_document),
        status=204, tag="documents", errors={404: NO_DOCUMENT},
    ),
    ProtoRoute(
        "POST", COLLECTION + "/search", rpc(SERVICE, "Search"), _core(search.search),
        required=("query",), tag="search",
        errors={
            400: "An empty query, top_k outside 1-100, or a filter that is not an object.",
            404: NO_COLLECTION, 413: "", 415: NOT_JSON, 503: "",
        },
    ),
    ProtoRoute(
        "GET", "/api/v1/tasks/{task_id}", rpc(SERVICE, "GetTask"), _core(tasks.get_task),
        answer="task", tag="tasks", errors={404: "No such task for this tenant."},
    ),
    ProtoRoute(
        "POST", "/api/v1/tasks/{task_id}/cancel", rpc(SERVICE, "CancelTask"),
        _core(tasks.cancel_task), answer="task", tag="tasks",
        errors={404: "No such task for this tenant.", 409: "The task has ended."},
    ),
)  # fmt: skip
