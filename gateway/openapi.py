"""The gateway's OpenAPI 3.1 description, served at `GET /openapi.json`.

Written by hand from embedpipe/http/openapi.py's helpers; tests/gateway/test_gateway_ops.py
checks that it is valid and that every route the app registers is in it. `/api/...` routes
answer errors in Google's JSON error shape, `/v1/...` routes in OpenAI's (gateway/errors.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from embedpipe.http.openapi import (
    AUTHENTICATED,
    GOOGLE_ERROR,
    Schema,
    array,
    boolean,
    free_object,
    google_error,
    integer,
    json_content,
    nullable,
    obj,
    openapi_document,
    openapi_handler,
    openapi_path,
    probe_paths,
    probe_schemas,
    public_operation,
    ref,
    response,
    security_schemes,
    string,
    timestamp,
)
from gateway.upstream import TIMEOUT_HEADER

API_VERSION = "0.1.0"
OPENAI = "OpenAIError"

#: Why each error status happens; shared by both error shapes.
ERROR_REASONS: dict[int, str] = {
    400: "A field is missing, mistyped or refused (the message names each one), "
    f"or {TIMEOUT_HEADER} is not a positive number.",
    401: "No API key, or an unknown one.",
    403: "The API key does not belong to the request's tenant_id.",
    413: "The body is over the gateway's size limit, or the request over the gRPC message limit.",
    415: "Content-Type is not application/json.",
    429: "The tenant's rate limit is spent; retry after Retry-After seconds.",
    503: "The embedding server is unavailable; retry after Retry-After seconds.",
    504: "The request's time budget ran out before the embedding server answered.",
}
RETRY_AFTER = frozenset({429, 503})
#: Errors of routes that read a JSON body and call the embedding server.
BODY_ERRORS = (400, 401, 413, 415, 429, 503, 504)
#: Errors of routes that only call the embedding server.
CALL_ERRORS = (400, 401, 429, 503, 504)


# --- components -------------------------------------------------------------------------


def _schemas() -> dict[str, Schema]:
    required_id = "Required; non-empty."
    return {
        "Chunk": obj(
            {
                "chunk_id": string("Unique within the request; non-empty."),
                "text": string("The text to embed; non-empty, within the model's limits."),
                "metadata": free_object("Passed through untouched."),
            },
            required=["chunk_id", "text"],
        ),
        "GenerateRequest": obj(
            {
                "document_id": string(required_id),
                "collection_id": string(required_id),
                "tenant_id": string("Must be the API key's tenant."),
                "chunks": array(ref("Chunk"), "1 to EMBEDDING_MAX_CHUNKS chunks.", minItems=1),
                "model": string("A served model (GET /v1/models); empty means the default."),
                "task_id": string(required_id),
                "callback_queue": string(
                    "Redis list the callback is pushed onto; must match "
                    "EMBEDDING_CALLBACK_QUEUE_PATTERN (e.g. ingestion:callbacks:embedding)."
                ),
            },
            required=[
                "document_id",
                "collection_id",
                "tenant_id",
                "chunks",
                "task_id",
                "callback_queue",
            ],
            description=(
                "An embedding job: chunks of one document and where its callback goes "
                "(docs/contracts.md)."
            ),
        ),
        "GenerateAccepted": obj(
            {
                "job_id": string("The job's id; the callback carries it too."),
                "task_id": string("The request's task_id."),
                "status": string(enum=["accepted"]),
                "accepted_at": timestamp("When the job was first accepted (UTC)."),
                "chunk_count": integer(minimum=1),
                "deduplicated": boolean(
                    "True if the same request was accepted before (same job_id)."
                ),
            },
            required=[
                "job_id",
                "task_id",
                "status",
                "accepted_at",
                "chunk_count",
                "deduplicated",
            ],
        ),
        GOOGLE_ERROR: google_error(
            "Google's JSON error format.",
            status="The google.rpc.Code name, e.g. INVALID_ARGUMENT.",
        ),
        OPENAI: obj(
            {
                "error": obj(
                    {
                        "message": string(),
                        "type": string("e.g. invalid_request_error, authentication_error."),
                        "param": nullable(string("The bad field.")),
                        "code": nullable(string()),
                    },
                    required=["message", "type", "param", "code"],
                )
            },
            required=["error"],
            description="OpenAI's error format.",
        ),
        "EmbeddingsRequest": obj(
            {
                "input": {
                    "oneOf": [string(), array(string())],
                    "description": "Text or texts to embed (token arrays are not supported).",
                },
                "model": string(),
                "dimensions": integer("Fewer dimensions, if the model supports it."),
                "encoding_format": string(enum=["float", "base64"], default="float"),
            },
            required=["input", "model"],
        ),
        "EmbeddingsResponse": obj(
            {
                "object": string(enum=["list"]),
                "data": array(
                    obj(
                        {
                            "object": string(enum=["embedding"]),
                            "index": integer(minimum=0),
                            "embedding": {
                                "oneOf": [
                                    array({"type": "number"}),
                                    string("Little-endian float32 bytes, base64."),
                                ]
                            },
                        },
                        required=["object", "index", "embedding"],
                    )
                ),
                "model": string(),
                "usage": obj(
                    {"prompt_tokens": integer(), "total_tokens": integer()},
                    required=["prompt_tokens", "total_tokens"],
                ),
            },
            required=["object", "data", "model", "usage"],
        ),
        "ModelList": obj(
            {
                "object": string(enum=["list"]),
                "data": array(
                    obj(
                        {
                            "id": string(),
                            "object": string(enum=["model"]),
                            "created": integer(),
                            "owned_by": string(),
                        },
                        required=["id", "object", "created", "owned_by"],
                    )
                ),
            },
            required=["object", "data"],
        ),
        **probe_schemas(["embedding"]),
    }


def _error_responses() -> dict[str, Schema]:
    """`GoogleError400`, `OpenAIError429`, ...: every error status in both shapes."""
    responses = {}
    for style in (GOOGLE_ERROR, OPENAI):
        for status, reason in ERROR_REASONS.items():
            headers = {"Retry-After": ref("RetryAfter", "headers")} if status in RETRY_AFTER else {}
            responses[f"{style}{status}"] = response(reason, ref(style), **headers)
    return responses


def _components() -> Schema:
    return {
        "schemas": _schemas(),
        "responses": _error_responses(),
        "headers": {
            "RetryAfter": {
                "description": "Seconds to wait before retrying.",
                "schema": integer(minimum=1),
            }
        },
        "parameters": {
            "RequestTimeout": {
                "name": TIMEOUT_HEADER,
                "in": "header",
                "required": False,
                "description": "The caller's time budget in seconds; lowers the configured one.",
                "schema": {"type": "number", "exclusiveMinimum": 0},
            }
        },
        "securitySchemes": security_schemes("An API key."),
    }


# --- operations ---------------------------------------------------------------------------


def upstream_operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    style: str,
    ok: tuple[int, Schema],
    errors: Iterable[int],
    body: Schema | None = None,
) -> Schema:
    """An authenticated route that calls the embedding server, with its error responses."""
    status, ok_response = ok
    responses = {str(status): ok_response}
    responses |= {str(code): ref(f"{style}{code}", "responses") for code in sorted(errors)}
    responses["default"] = response("Any other error, in the same shape.", ref(style))
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "security": AUTHENTICATED,
        "parameters": [ref("RequestTimeout", "parameters")],
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": json_content(body)}
    return operation


def _paths() -> dict[str, Schema]:
    return {
        "/api/v1/embeddings/generate": {
            "post": upstream_operation(
                "generateEmbeddings",
                "Accept an embedding job; the vectors arrive later on callback_queue.",
                tag="embeddings",
                style=GOOGLE_ERROR,
                ok=(202, response("Accepted.", ref("GenerateAccepted"))),
                errors=(*BODY_ERRORS, 403),
                body=ref("GenerateRequest"),
            )
        },
        "/v1/embeddings": {
            "post": upstream_operation(
                "createEmbeddings",
                "Embed texts now (OpenAI-compatible).",
                tag="openai",
                style=OPENAI,
                ok=(200, response("The embeddings.", ref("EmbeddingsResponse"))),
                errors=BODY_ERRORS,
                body=ref("EmbeddingsRequest"),
            )
        },
        "/v1/models": {
            "get": upstream_operation(
                "listModels",
                "The served models (OpenAI-compatible).",
                tag="openai",
                style=OPENAI,
                ok=(200, response("The models.", ref("ModelList"))),
                errors=CALL_ERRORS,
            )
        },
        **probe_paths("the embedding server serves and Redis answers."),
        "/metrics": {
            "get": public_operation(
                "metrics",
                "Prometheus metrics (OpenMetrics if asked for in Accept).",
                {
                    200: {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": string()}},
                    }
                },
            )
        },
        **openapi_path(),
    }


def document() -> Schema:
    """The OpenAPI document, built afresh (it is small)."""
    return openapi_document(
        title="embedpipe gateway",
        version=API_VERSION,
        description="HTTP face of the embedpipe Embedding Service.",
        tags={
            "embeddings": "The ingestion contract (docs/contracts.md).",
            "openai": "OpenAI-compatible routes.",
            "operations": "Health, readiness, metrics, this document.",
        },
        paths=_paths(),
        components=_components(),
    )


#: `GET /openapi.json`.
openapi_json = openapi_handler(document)
