"""The ingestion API's OpenAPI 3.1 description, served at `GET /openapi.json`.

Built by hand from embedpipe/http/openapi.py's helpers, like gateway/openapi.py;
tests/test_ingestion_openapi.py checks that it is valid and that it lists exactly the routes
`create_app` registers, and scripts/gen_docs.py renders it into docs/http-api.md. Errors are
Google's JSON error shape (embedpipe/http/errors.py); ids another tenant owns answer 404, like
ids that do not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from embedpipe.http import openapi as spec
from embedpipe.task_status import TaskStatus
from ingestion.core.checks import ID_PATTERN
from ingestion.core.search import MAX_TOP_K

API_VERSION = "0.1.0"

#: Every status a task goes through (the `tasks.status` CHECK of the schema), in order.
TASK_STATUSES = tuple(str(status) for status in TaskStatus)
#: Content types of the formats an upload may be (ingestion/extract/); the bytes decide.
UPLOAD_MEDIA_TYPES = (
    "text/plain",
    "text/markdown",
    "text/html",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
)

#: The general reason of each error status; operations narrow it where they can.
ERROR_REASONS: dict[int, str] = {
    400: "A field or the JSON body is missing, mistyped or refused; the message and a "
    "google.rpc.BadRequest detail name the field.",
    401: "No API key, an unknown one, or a service key (which has no tenant).",
    404: "No such resource for this tenant (another tenant's ids are not found either).",
    409: "The request clashes with the current state.",
    413: "The body is over the size limit (INGESTION_MAX_UPLOAD_BYTES).",
    415: "Content-Type is not application/json.",
    422: "The document is of a supported type but has nothing to extract.",
    503: "The embedding server cannot be reached now; retry later.",
}


# --- responses ---------------------------------------------------------------------------


def error(status: int, description: str = "") -> spec.Schema:
    """The shared error response of `status`, with a reason specific to the route if given."""
    reference = spec.ref(f"Error{status}", "responses")
    return {**reference, "description": description} if description else reference


# --- components ------------------------------------------------------------------------------


ID_RULE = "1-128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit."
ID_SCHEMA = spec.string(pattern=f"^{ID_PATTERN.pattern}$")


def _id(what: str) -> spec.Schema:
    """An id in an answer."""
    return spec.string(f"The {what}'s id.")


def _new_id(description: str) -> spec.Schema:
    """An id a client chooses, with its rule."""
    return {**ID_SCHEMA, "description": f"{description} {ID_RULE}"}


def _collection_properties() -> dict[str, spec.Schema]:
    return {
        "tenant_id": spec.string("The API key's tenant."),
        "collection_id": _id("collection"),
        "model": spec.string("The embedding model of every vector of the collection."),
        "dimensions": spec.integer("The model's vector size.", minimum=1),
        "chunk_tokens": spec.integer("Tokens per chunk.", minimum=16),
        "overlap_tokens": spec.integer("Tokens shared by neighbouring chunks.", minimum=0),
        "metadata": spec.free_object("The metadata given at creation."),
        "created_at": spec.timestamp("When the collection was created."),
    }


COLLECTION_FIELDS = (
    "tenant_id",
    "collection_id",
    "model",
    "dimensions",
    "chunk_tokens",
    "overlap_tokens",
    "metadata",
    "created_at",
)
DOCUMENT_FIELDS = (
    "tenant_id",
    "collection_id",
    "document_id",
    "filename",
    "content_type",
    "content_hash",
    "metadata",
    "status",
    "chunk_count",
    "current_task_id",
    "created_at",
    "updated_at",
)
TASK_FIELDS = (
    "tenant_id",
    "task_id",
    "collection_id",
    "document_id",
    "status",
    "chunks_total",
    "chunks_embedded",
    "content_hash",
    "error_code",
    "error_message",
    "created_at",
    "updated_at",
    "finished_at",
    "progress",
)
EVENT_FIELDS = (
    "type",
    "task_id",
    "collection_id",
    "document_id",
    "status",
    "progress",
    "chunks_total",
    "chunks_embedded",
    "error_code",
    "error_message",
)


def _task_properties() -> dict[str, spec.Schema]:
    return {
        "task_id": spec.string("The task's id."),
        "collection_id": _id("collection"),
        "document_id": _id("document"),
        "status": spec.ref("TaskStatus"),
        "progress": spec.integer("Rough progress in percent.", minimum=0, maximum=100),
        "chunks_total": spec.integer("Chunks of the document (0 until chunked).", minimum=0),
        "chunks_embedded": spec.integer("Chunks whose vectors are stored.", minimum=0),
        "error_code": spec.nullable(
            spec.string(
                "Why the task failed, for programs: an ingestion code (e.g. "
                "UNPROCESSABLE, EMBEDDING_FAILED) or the embedding callback's error_code."
            )
        ),
        "error_message": spec.nullable(spec.string("Why the task failed, for people.")),
    }


def _schemas() -> dict[str, spec.Schema]:
    task = _task_properties()
    return {
        "CollectionCreate": spec.obj(
            {
                "collection_id": _new_id("The collection's id, unique for the tenant."),
                "model": spec.string(
                    "A model the embedding server serves; default INGESTION_DEFAULT_MODEL."
                ),
                "chunk_tokens": spec.integer(
                    "Tokens per chunk: 16 up to the model's input window less 2; default "
                    "INGESTION_CHUNK_TOKENS, lowered to fit the model.",
                    minimum=16,
                ),
                "overlap_tokens": spec.integer(
                    "Tokens shared by neighbouring chunks: 0 up to half of chunk_tokens; "
                    "default INGESTION_OVERLAP_TOKENS, lowered to fit.",
                    minimum=0,
                ),
                "metadata": spec.free_object("Kept with the collection."),
            },
            required=["collection_id"],
        ),
        "Collection": spec.obj(_collection_properties(), required=COLLECTION_FIELDS),
        "CollectionList": spec.obj(
            {
                "collections": spec.array(
                    spec.obj(
                        {
                            **_collection_properties(),
                            "document_count": spec.integer(
                                "Documents in the collection.", minimum=0
                            ),
                        },
                        required=[*COLLECTION_FIELDS, "document_count"],
                    ),
                    "The tenant's collections, by collection_id.",
                )
            },
            required=["collections"],
        ),
        "DocumentText": spec.obj(
            {
                "text": spec.string("The document, as plain text."),
                "document_id": _new_id(
                    "The document's id; a new one if absent. The same id again replaces the "
                    "document."
                ),
                "filename": spec.string("Stored with the document; default document.txt."),
                "metadata": spec.free_object("Stored with the document and each of its chunks."),
            },
            required=["text"],
            description="A text document sent as JSON (stored as text/plain).",
        ),
        "DocumentUpload": spec.obj(
            {
                "file": spec.string(
                    "The document: txt, md, html, pdf or docx. Its bytes, name and "
                    "Content-Type decide the format.",
                    contentMediaType="application/octet-stream",
                ),
                "document_id": _new_id(
                    "The document's id; a new one if absent. The same id again replaces the "
                    "document."
                ),
                "metadata": spec.string(
                    "A JSON object, stored with the document and each of its chunks.",
                    contentMediaType="application/json",
                ),
            },
            required=["file"],
            description="A file upload (multipart/form-data).",
        ),
        "UploadAccepted": spec.obj(
            {
                "task_id": spec.string(
                    "The task that ingests the document; follow it with "
                    "GET /api/v1/tasks/{task_id} or the WebSocket."
                ),
                "document_id": _id("document"),
                "collection_id": _id("collection"),
                "status": spec.ref("TaskStatus"),
            },
            required=["task_id", "document_id", "collection_id", "status"],
            description="The document was read and its text queued for chunking and embedding.",
        ),
        "Document": spec.obj(
            {
                "tenant_id": spec.string("The API key's tenant."),
                "collection_id": _id("collection"),
                "document_id": _id("document"),
                "filename": spec.nullable(spec.string("The uploaded file's name.")),
                "content_type": spec.nullable(spec.string("The uploaded file's Content-Type.")),
                "content_hash": spec.nullable(
                    spec.string("Hash of the searchable version's text.")
                ),
                "metadata": spec.free_object("The metadata given at upload."),
                "status": spec.string(
                    "completed once a version is searchable.",
                    enum=["pending", "completed", "failed"],
                ),
                "chunk_count": spec.integer("Searchable chunks.", minimum=0),
                "current_task_id": spec.nullable(
                    spec.string("The task whose chunks are the searchable ones.")
                ),
                "created_at": spec.timestamp("When the document was first uploaded."),
                "updated_at": spec.timestamp("When the document last changed."),
            },
            required=DOCUMENT_FIELDS,
        ),
        "DocumentList": spec.obj(
            {
                "documents": spec.array(
                    spec.ref("Document"), "The collection's documents, by document_id."
                )
            },
            required=["documents"],
        ),
        "TaskStatus": spec.string(
            "pending → extracting → chunking → embedding → storing → completed; unchanged "
            "when the text is the stored version's; failed with error_code and error_message.",
            enum=list(TASK_STATUSES),
        ),
        "Task": spec.obj(
            {
                "tenant_id": spec.string("The API key's tenant."),
                **task,
                "content_hash": spec.nullable(spec.string("Hash of the chunked text.")),
                "created_at": spec.timestamp("When the upload was accepted."),
                "updated_at": spec.timestamp("When the task last changed."),
                "finished_at": spec.nullable(spec.timestamp("When the task completed or failed.")),
            },
            required=TASK_FIELDS,
        ),
        "SearchRequest": spec.obj(
            {
                "query": spec.string("The text to search for; non-empty.", minLength=1),
                "top_k": spec.integer("How many chunks.", minimum=1, maximum=MAX_TOP_K, default=5),
                "filter": spec.free_object(
                    'Metadata values the chunks must have (JSON containment, e.g. {"lang": "en"}).'
                ),
            },
            required=["query"],
        ),
        "SearchResults": spec.obj(
            {
                "results": spec.array(
                    spec.obj(
                        {
                            "document_id": _id("document"),
                            "chunk_id": spec.string("Stable id of the chunk in its document."),
                            "position": spec.integer(
                                "The chunk's place in the document.", minimum=0
                            ),
                            "text": spec.string("The chunk's text."),
                            "metadata": spec.free_object(
                                "The document's metadata with the chunk's own (e.g. headings)."
                            ),
                            "score": {
                                "type": "number",
                                "description": "Cosine similarity to the query; higher is nearer.",
                            },
                        },
                        required=[
                            "document_id",
                            "chunk_id",
                            "position",
                            "text",
                            "metadata",
                            "score",
                        ],
                    ),
                    "The nearest searchable chunks, nearest first.",
                ),
                "model": spec.string("The model that embedded the query."),
            },
            required=["results", "model"],
        ),
        "SocketCommand": spec.obj(
            {
                "action": spec.string(enum=["subscribe", "unsubscribe"]),
                "task_id": spec.string("One task of the tenant."),
                "all": spec.boolean("true: every task of the tenant."),
            },
            required=["action"],
            description="A message a WebSocket client sends: a task_id, or all: true.",
        ),
        "SocketReply": spec.obj(
            {
                "type": spec.string(enum=["subscribed", "unsubscribed", "error"]),
                "task_id": spec.string("The task the reply is about."),
                "all": spec.boolean("The reply is about every task of the tenant."),
                "status": spec.integer("404 when the task is not found.", enum=[404]),
                "message": spec.string("What was wrong with the command (type error)."),
            },
            required=["type"],
            description="The server's answer to each SocketCommand.",
        ),
        "TaskEvent": spec.obj(
            {"type": spec.string(enum=["task"]), **task},
            required=EVENT_FIELDS,
            description="A task's state, sent on subscribing and on every change.",
        ),
        spec.GOOGLE_ERROR: spec.google_error(
            "Google's JSON error format (embedpipe/http/errors.py).",
            status="The status's name, e.g. INVALID_ARGUMENT, NOT_FOUND.",
            message="What went wrong, for people.",
            details="Empty, or one BadRequest naming the field at fault.",
            type_url="type.googleapis.com/google.rpc.BadRequest",
            field="The field at fault.",
            violation="What is wrong with it.",
        ),
        **spec.probe_schemas(["postgres", "redis"]),
    }


def _components() -> spec.Schema:
    return {
        "schemas": _schemas(),
        "responses": {
            f"Error{status}": spec.response(reason, spec.ref(spec.GOOGLE_ERROR))
            for status, reason in ERROR_REASONS.items()
        },
        "parameters": {
            name: {
                "name": name,
                "in": "path",
                "required": True,
                "description": f"The {what}'s id.",
                "schema": {**ID_SCHEMA},
            }
            for name, what in (("collection_id", "collection"), ("document_id", "document"))
        }
        | {
            "task_id": {
                "name": "task_id",
                "in": "path",
                "required": True,
                "description": "The task's id (from the upload's answer).",
                "schema": spec.string(),
            }
        },
        "securitySchemes": spec.security_schemes("An API key; it decides the tenant of every id.")
        | {
            "queryKeyAuth": {
                "type": "apiKey",
                "in": "query",
                "name": "api_key",
                "description": "For WebSocket clients that cannot set headers (browsers).",
            },
        },
    }


# --- operations ------------------------------------------------------------------------------


def operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    ok: tuple[int, spec.Schema],
    errors: Mapping[int, str] | Iterable[int] = (),
    params: Iterable[str] = (),
    body: spec.Schema | None = None,
    description: str = "",
    security: list[spec.Schema] | None = None,
) -> spec.Schema:
    """An authenticated route: its success, its errors (each with a reason for this route
    or the shared one), its path parameters and request body."""
    reasons = errors if isinstance(errors, Mapping) else dict.fromkeys(errors, "")
    status, ok_response = ok
    responses = {str(status): ok_response, "401": error(401)}
    responses |= {str(code): error(code, reason) for code, reason in reasons.items()}
    responses = dict(sorted(responses.items()))
    responses["default"] = spec.response(
        "Any other error (500: internal error).", spec.ref(spec.GOOGLE_ERROR)
    )
    result: spec.Schema = {"operationId": operation_id, "summary": summary}
    if description:
        result["description"] = description
    result |= {"tags": [tag], "security": spec.AUTHENTICATED if security is None else security}
    if parameters := [spec.ref(name, "parameters") for name in params]:
        result["parameters"] = parameters
    if body is not None:
        result["requestBody"] = {"required": True, "content": body}
    result["responses"] = responses
    return result


NO_COLLECTION = "No such collection for this tenant."
NOT_JSON = "Content-Type is not application/json."

WEBSOCKET_PROTOCOL = """\
Upgrades to a WebSocket that carries live events of the tenant's tasks. Clients that
cannot set headers (browsers) pass the key as the `api_key` query parameter. Every message
is a JSON text frame; the server pings every 30 s.

The client sends SocketCommand messages:

- `{"action": "subscribe", "task_id": "..."}`: events of one task. The answer is
  `{"type": "subscribed", "task_id": "..."}` followed at once by the task's current state
  as a TaskEvent, so nothing that happened before is missed. A task that does not exist
  (or is another tenant's) is answered `{"type": "error", "status": 404, "message":
  "task not found", "task_id": "..."}`.
- `{"action": "subscribe", "all": true}`: events of every task of the tenant; answered
  `{"type": "subscribed", "all": true}`.
- `{"action": "unsubscribe", "task_id": "..."}` or `{"action": "unsubscribe", "all": true}`:
  answered `{"type": "unsubscribed", ...}`.

Anything else is answered `{"type": "error", "message": "..."}`; the connection stays open.
The server sends a TaskEvent (`{"type": "task", "task_id", "collection_id", "document_id",
"status", "progress", "chunks_total", "chunks_embedded", "error_code", "error_message"}`)
on every change of a subscribed task, from whichever API replica or worker made it (events
go through Redis pub/sub)."""


def _paths() -> dict[str, spec.Schema]:
    collection = ("collection_id",)
    document = ("collection_id", "document_id")
    return {
        "/api/v1/collections": {
            "post": operation(
                "createCollection",
                "Create a collection with its embedding model and chunking settings.",
                tag="collections",
                ok=(201, spec.response("Created.", spec.ref("Collection"))),
                errors={
                    400: "A bad field, or a model the embedding server does not serve.",
                    409: "The tenant has a collection of that collection_id already.",
                    413: "",
                    415: NOT_JSON,
                    503: "",
                },
                body=spec.json_content(spec.ref("CollectionCreate")),
            ),
            "get": operation(
                "listCollections",
                "The tenant's collections, with their document counts.",
                tag="collections",
                ok=(200, spec.response("The collections.", spec.ref("CollectionList"))),
            ),
        },
        "/api/v1/collections/{collection_id}": {
            "get": operation(
                "getCollection",
                "A collection.",
                tag="collections",
                ok=(200, spec.response("The collection.", spec.ref("Collection"))),
                errors={404: NO_COLLECTION},
                params=collection,
            ),
            "delete": operation(
                "deleteCollection",
                "Delete a collection with all its documents, chunks, vectors and tasks.",
                tag="collections",
                ok=(204, spec.response("Deleted.")),
                errors={404: NO_COLLECTION},
                params=collection,
            ),
        },
        "/api/v1/collections/{collection_id}/documents": {
            "post": operation(
                "uploadDocument",
                "Upload a document (a file, or text as JSON); answered once its text is read.",
                description="The format is checked and the text extracted before the answer, "
                "so an unsupported type (415) or a file with nothing to read (422) is refused "
                "at once; chunking and embedding follow in a worker. Uploading again with the "
                "same document_id replaces the document once the new version is embedded "
                "(unchanged text is not embedded again).",
                tag="documents",
                ok=(202, spec.response("Accepted; follow the task.", spec.ref("UploadAccepted"))),
                errors={
                    400: "A bad document_id or metadata, no `file` part, or no `text` string.",
                    404: NO_COLLECTION,
                    413: "The document is over INGESTION_MAX_UPLOAD_BYTES.",
                    415: "A file type that is not ingested (e.g. an image or a zip), or a "
                    "body that is neither multipart/form-data nor application/json.",
                    422: "A supported type with nothing to extract: empty, corrupt, "
                    "encrypted, or not what its name claims.",
                },
                params=collection,
                body={
                    "multipart/form-data": {
                        "schema": spec.ref("DocumentUpload"),
                        "encoding": {"file": {"contentType": ", ".join(UPLOAD_MEDIA_TYPES)}},
                    },
                    **spec.json_content(spec.ref("DocumentText")),
                },
            ),
            "get": operation(
                "listDocuments",
                "The collection's documents, with their status.",
                tag="documents",
                ok=(200, spec.response("The documents.", spec.ref("DocumentList"))),
                errors={404: NO_COLLECTION},
                params=collection,
            ),
        },
        "/api/v1/collections/{collection_id}/documents/{document_id}": {
            "get": operation(
                "getDocument",
                "A document.",
                tag="documents",
                ok=(200, spec.response("The document.", spec.ref("Document"))),
                errors={404: "No such document in this tenant's collection."},
                params=document,
            ),
            "delete": operation(
                "deleteDocument",
                "Delete a document with its chunks and vectors.",
                tag="documents",
                ok=(204, spec.response("Deleted.")),
                errors={404: "No such document in this tenant's collection."},
                params=document,
            ),
        },
        "/api/v1/collections/{collection_id}/search": {
            "post": operation(
                "search",
                "The chunks of the collection nearest to a query (cosine similarity).",
                tag="search",
                ok=(200, spec.response("The nearest chunks.", spec.ref("SearchResults"))),
                errors={
                    400: "An empty query, top_k outside 1-100, or a filter that is not an object.",
                    404: NO_COLLECTION,
                    413: "",
                    415: NOT_JSON,
                    503: "",
                },
                params=collection,
                body=spec.json_content(spec.ref("SearchRequest")),
            )
        },
        "/api/v1/tasks/{task_id}": {
            "get": operation(
                "getTask",
                "A task: status, progress, chunk counts, timestamps, error.",
                tag="tasks",
                ok=(200, spec.response("The task.", spec.ref("Task"))),
                errors={404: "No such task for this tenant."},
                params=("task_id",),
            )
        },
        "/api/v1/ws": {
            "get": operation(
                "taskEvents",
                "Live task events over a WebSocket.",
                description=WEBSOCKET_PROTOCOL,
                tag="tasks",
                ok=(101, spec.response("Switching Protocols: the WebSocket is open.")),
                errors={400: "Not a WebSocket handshake."},
                security=[*spec.AUTHENTICATED, {"queryKeyAuth": []}],
            )
            | {
                "x-websocket-messages": {
                    "send": spec.ref("SocketCommand"),
                    "receive": {"oneOf": [spec.ref("SocketReply"), spec.ref("TaskEvent")]},
                }
            }
        },
        **spec.probe_paths("PostgreSQL and Redis answer."),
        **spec.openapi_path(),
    }


def document() -> spec.Schema:
    """The OpenAPI document, built afresh (it is small)."""
    return spec.openapi_document(
        title="embedpipe ingestion",
        version=API_VERSION,
        description="HTTP API of the embedpipe Ingestion Service: collections, document "
        "uploads, tasks and their live events, search. Every id belongs to the API key's "
        "tenant; another tenant's ids answer 404. With no API key configured "
        "(development only) authentication is off and every request is tenant `default`.",
        tags={
            "collections": "Collections: a model and chunk settings.",
            "documents": "Uploads and their documents.",
            "search": "Nearest chunks of a collection.",
            "tasks": "Ingestion progress: polling and live events.",
            "operations": "Health, readiness, this document.",
        },
        paths=_paths(),
        components=_components(),
    )


#: `GET /openapi.json`.
openapi_json = spec.openapi_handler(document)
