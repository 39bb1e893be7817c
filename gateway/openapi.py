"""The gateway's OpenAPI 3.1 document, served at `GET /openapi.json`.

`generate(comments)` makes it: `POST /api/v1/embeddings/generate` from its route and the
protos (embedpipe/http/openapi.py's `ProtoDescriber`), plus what only HTTP has, described
here: the OpenAI-compatible routes, metrics, probes. scripts/gen_docs.py writes it to
gateway/openapi.json (checked fresh by `make check`), which the gateway serves;
tests/gateway/test_gateway_ops.py checks that every route the app registers is in it.
`/api/...` routes answer errors in Google's JSON error shape, `/v1/...` routes in OpenAI's
(gateway/errors.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from embedpipe.http import openapi as spec
from gateway.generate import BODY_ERRORS, ROUTES
from gateway.upstream import TIMEOUT_HEADER

API_VERSION = "0.2.0"
#: Where scripts/gen_docs.py writes the document, and the gateway reads it.
DOCUMENT_PATH = Path(__file__).with_name("openapi.json")
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
#: Errors of routes that only call the embedding server.
CALL_ERRORS = (400, 401, 429, 503, 504)


# --- components -------------------------------------------------------------------------


def _schemas() -> dict[str, spec.Schema]:
    return {
        spec.GOOGLE_ERROR: spec.google_error(
            "Google's JSON error format.",
            status="The google.rpc.Code name, e.g. INVALID_ARGUMENT.",
        ),
        OPENAI: spec.obj(
            {
                "error": spec.obj(
                    {
                        "message": spec.string(),
                        "type": spec.string("e.g. invalid_request_error, authentication_error."),
                        "param": spec.nullable(spec.string("The bad field.")),
                        "code": spec.nullable(spec.string()),
                    },
                    required=["message", "type", "param", "code"],
                )
            },
            required=["error"],
            description="OpenAI's error format.",
        ),
        "EmbeddingsRequest": spec.obj(
            {
                "input": {
                    "oneOf": [spec.string(), spec.array(spec.string())],
                    "description": "Text or texts to embed (token arrays are not supported).",
                },
                "model": spec.string(),
                "dimensions": spec.integer("Fewer dimensions, if the model supports it."),
                "encoding_format": spec.string(enum=["float", "base64"], default="float"),
            },
            required=["input", "model"],
        ),
        "EmbeddingsResponse": spec.obj(
            {
                "object": spec.string(enum=["list"]),
                "data": spec.array(
                    spec.obj(
                        {
                            "object": spec.string(enum=["embedding"]),
                            "index": spec.integer(minimum=0),
                            "embedding": {
                                "oneOf": [
                                    spec.array({"type": "number"}),
                                    spec.string("Little-endian float32 bytes, base64."),
                                ]
                            },
                        },
                        required=["object", "index", "embedding"],
                    )
                ),
                "model": spec.string(),
                "usage": spec.obj(
                    {"prompt_tokens": spec.integer(), "total_tokens": spec.integer()},
                    required=["prompt_tokens", "total_tokens"],
                ),
            },
            required=["object", "data", "model", "usage"],
        ),
        "ModelList": spec.obj(
            {
                "object": spec.string(enum=["list"]),
                "data": spec.array(
                    spec.obj(
                        {
                            "id": spec.string(),
                            "object": spec.string(enum=["model"]),
                            "created": spec.integer(),
                            "owned_by": spec.string(),
                        },
                        required=["id", "object", "created", "owned_by"],
                    )
                ),
            },
            required=["object", "data"],
        ),
        **spec.probe_schemas(["embedding"]),
    }


def _error_responses() -> dict[str, spec.Schema]:
    """`GoogleError400`, `OpenAIError429`, ...: every error status in both shapes."""
    responses = {}
    for style in (spec.GOOGLE_ERROR, OPENAI):
        for status, reason in ERROR_REASONS.items():
            headers = (
                {"Retry-After": spec.ref("RetryAfter", "headers")} if status in RETRY_AFTER else {}
            )
            responses[f"{style}{status}"] = spec.response(reason, spec.ref(style), **headers)
    return responses


def _components() -> spec.Schema:
    return {
        "schemas": _schemas(),
        "responses": _error_responses(),
        "headers": {
            "RetryAfter": {
                "description": "Seconds to wait before retrying.",
                "schema": spec.integer(minimum=1),
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
        "securitySchemes": spec.security_schemes("An API key."),
    }


# --- operations ---------------------------------------------------------------------------


def upstream_operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    style: str,
    ok: tuple[int, spec.Schema],
    errors: Iterable[int],
    body: spec.Schema | None = None,
) -> spec.Schema:
    """An authenticated route that calls the embedding server, with its error responses."""
    status, ok_response = ok
    responses = {str(status): ok_response}
    responses |= {str(code): spec.ref(f"{style}{code}", "responses") for code in sorted(errors)}
    responses["default"] = spec.response("Any other error, in the same shape.", spec.ref(style))
    operation: spec.Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "security": spec.AUTHENTICATED,
        "parameters": [spec.ref("RequestTimeout", "parameters")],
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": spec.json_content(body)}
    return operation


def _paths() -> dict[str, spec.Schema]:
    """The routes that only HTTP has."""
    return {
        "/v1/embeddings": {
            "post": upstream_operation(
                "createEmbeddings",
                "Embed texts now (OpenAI-compatible).",
                tag="openai",
                style=OPENAI,
                ok=(200, spec.response("The embeddings.", spec.ref("EmbeddingsResponse"))),
                errors=BODY_ERRORS,
                body=spec.ref("EmbeddingsRequest"),
            )
        },
        "/v1/models": {
            "get": upstream_operation(
                "listModels",
                "The served models (OpenAI-compatible).",
                tag="openai",
                style=OPENAI,
                ok=(200, spec.response("The models.", spec.ref("ModelList"))),
                errors=CALL_ERRORS,
            )
        },
        **spec.probe_paths("the embedding server serves and Redis answers."),
        **spec.metrics_path(),
        **spec.openapi_path(),
    }


def _google_error(status: int, reason: str) -> spec.Schema:
    reference = spec.ref(f"{spec.GOOGLE_ERROR}{status}", "responses")
    return {**reference, "description": reason} if reason else reference


def generate(comments: Mapping[str, str]) -> spec.Schema:
    """The document, from the routes, the protos and their `comments` (full name → text)."""
    describer = spec.ProtoDescriber(comments)
    generated = describer.paths(ROUTES, _google_error)
    components = _components()
    components["schemas"] = dict(sorted({**describer.schemas, **components["schemas"]}.items()))
    return spec.openapi_document(
        title="embedpipe gateway",
        version=API_VERSION,
        description="HTTP face of the embedpipe Embedding Service. The generate route's "
        "bodies are the JSON form of the EmbeddingService messages (protos/).",
        tags={
            "embeddings": "The ingestion contract (docs/contracts.md).",
            "openai": "OpenAI-compatible routes.",
            "operations": "Health, readiness, metrics, this document.",
        },
        paths={**generated, **_paths()},
        components=components,
    )


#: The document as scripts/gen_docs.py wrote it.
document = spec.document_file(DOCUMENT_PATH)
#: `GET /openapi.json`.
openapi_json = spec.openapi_handler(document)
