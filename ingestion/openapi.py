"""The ingestion API's OpenAPI 3.1 document, served at `GET /openapi.json`.

`generate(comments)` makes it: the routes of `ingestion.routes.ROUTES` and their messages
from the protos (embedpipe/http/openapi.py's `ProtoDescriber`), plus what only HTTP has,
described here: the multipart upload, the WebSocket, the probes. scripts/gen_docs.py writes
it to ingestion/openapi.json (checked fresh by `make check`), which the service serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import cast

from google.protobuf.descriptor import Descriptor

from embedpipe.http import openapi as spec
from embedpipe.ingestion.v1 import resources_pb2
from ingestion import console
from ingestion.routes import ROUTES

API_VERSION = "0.2.0"
#: Where scripts/gen_docs.py writes the document, and the service reads it.
DOCUMENT_PATH = Path(__file__).with_name("openapi.json")

#: The general reason of each error status; routes narrow it where they can.
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

WEBSOCKET_PROTOCOL = """\
Upgrades to a WebSocket that carries live events of the tenant's tasks (over gRPC:
WatchTask). Clients that cannot set headers (browsers) pass the key as the `api_key` query
parameter. Every message is a JSON text frame; the server pings every 30 s.

The client sends SocketCommand messages:

- `{"action": "subscribe", "task_id": "..."}`: events of one task. The answer is
  `{"type": "subscribed", "task_id": "..."}` followed at once by the task's current state
  as a SocketEvent, so nothing that happened before is missed. A task that does not exist
  (or is another tenant's) is answered `{"type": "error", "status": 404, "message":
  "task not found", "task_id": "..."}`.
- `{"action": "subscribe", "all": true}`: events of every task of the tenant; answered
  `{"type": "subscribed", "all": true}`.
- `{"action": "unsubscribe", "task_id": "..."}` or `{"action": "unsubscribe", "all": true}`:
  answered `{"type": "unsubscribed", ...}`.

Anything else is answered `{"type": "error", "message": "..."}`; the connection stays open.
The server sends a SocketEvent (a TaskEvent with `"type": "task"`) on every change of a
subscribed task, from whichever API replica or worker made it (events go through Redis
pub/sub)."""


def _error(status: int, reason: str) -> spec.Schema:
    """The shared error response of `status`, with a reason of the route's if given."""
    reference = spec.ref(f"Error{status}", "responses")
    return {**reference, "description": reason} if reason else reference


def _http_only_schemas(describer: spec.ProtoDescriber) -> dict[str, spec.Schema]:
    event = describer.message_ref(cast(Descriptor, resources_pb2.TaskEvent.DESCRIPTOR), answer=True)
    return {
        "DocumentUpload": spec.obj(
            {
                "file": spec.string(
                    "The document: txt, md, html, pdf or docx. Its bytes, name and "
                    "Content-Type decide the format.",
                    contentMediaType="application/octet-stream",
                ),
                "document_id": spec.string(
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
        "SocketEvent": {
            "allOf": [
                event,
                spec.obj({"type": spec.string(enum=["task"])}, required=["type"]),
            ],
            "description": "A task's state, sent on subscribing and on every change.",
        },
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


def _console_paths() -> dict[str, spec.Schema]:
    """The web console's page and its two files (ingestion/console/)."""
    return {
        route: {
            "get": spec.public_operation(
                f"console{name.split('.')[-1].capitalize()}",
                f"The web console's {name} (no key: the page asks for one).",
                {
                    200: {
                        "description": f"`{name}`.",
                        "content": {content_type: {"schema": spec.string()}},
                    }
                },
            )
        }
        for route, (name, content_type) in console.FILES.items()
    }


def _websocket_path() -> dict[str, spec.Schema]:
    return {
        "/api/v1/ws": {
            "get": {
                "operationId": "taskEvents",
                "summary": "Live task events over a WebSocket.",
                "description": WEBSOCKET_PROTOCOL,
                "tags": ["tasks"],
                "security": [*spec.AUTHENTICATED, {"queryKeyAuth": []}],
                "responses": {
                    "101": spec.response("Switching Protocols: the WebSocket is open."),
                    "400": _error(400, "Not a WebSocket handshake."),
                    "401": _error(401, ""),
                    "default": spec.response(
                        "Any other error (500: internal error).", spec.ref(spec.GOOGLE_ERROR)
                    ),
                },
                "x-websocket-messages": {
                    "send": spec.ref("SocketCommand"),
                    "receive": {"oneOf": [spec.ref("SocketReply"), spec.ref("SocketEvent")]},
                },
            }
        }
    }


def generate(comments: Mapping[str, str]) -> spec.Schema:
    """The document, from the routes, the protos and their `comments` (full name → text)."""
    describer = spec.ProtoDescriber(comments)
    paths = describer.paths(ROUTES, _error)
    http_only = _http_only_schemas(describer)
    return spec.openapi_document(
        title="embedpipe ingestion",
        version=API_VERSION,
        description="HTTP API of the embedpipe Ingestion Service: collections, document "
        "uploads, tasks and their live events, search. The same operations are served over "
        "gRPC as embedpipe.ingestion.v1.IngestionService, with the same messages: these "
        "bodies are their JSON form. Every id belongs to the API key's tenant; another "
        "tenant's ids answer 404. With no API key configured (development only) "
        "authentication is off and every request is tenant `default`.",
        tags={
            "collections": "Collections: a model and chunk settings.",
            "documents": "Uploads and their documents.",
            "search": "Nearest chunks of a collection.",
            "tasks": "Ingestion progress: polling and live events.",
            "operations": "Health, readiness, metrics, this document.",
        },
        paths={
            **paths,
            **_websocket_path(),
            **spec.probe_paths("PostgreSQL and Redis answer."),
            **spec.metrics_path(),
            **spec.openapi_path(),
            **_console_paths(),
        },
        components={
            "schemas": dict(sorted({**describer.schemas, **http_only}.items())),
            "responses": {
                f"Error{status}": spec.response(reason, spec.ref(spec.GOOGLE_ERROR))
                for status, reason in ERROR_REASONS.items()
            },
            "securitySchemes": spec.security_schemes(
                "An API key; it decides the tenant of every id."
            )
            | {
                "queryKeyAuth": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "api_key",
                    "description": "For WebSocket clients that cannot set headers (browsers).",
                },
            },
        },
    )


#: The document as scripts/gen_docs.py wrote it.
document = spec.document_file(DOCUMENT_PATH)
#: `GET /openapi.json`.
openapi_json = spec.openapi_handler(document)
