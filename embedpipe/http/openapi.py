"""The building blocks of our services' OpenAPI 3.1 documents, written by hand.

Owns the small schema helpers (`string`, `obj`, `response`, ...), what the HTTP APIs share
(the `GoogleError` schema of embedpipe/http/errors.py's error body, the API-key security
schemes, the `/healthz`, `/readyz` and `/openapi.json` operations with their bodies) and
the skeleton of a document. Each service's own routes and schemas stay in its
`openapi.py` (gateway/openapi.py, ingestion/openapi.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

Schema = dict[str, Any]

#: The name of the schema of embedpipe/http/errors.py's error body.
GOOGLE_ERROR = "GoogleError"
#: The `security` of a route that takes an API key, as a bearer token or X-API-Key.
AUTHENTICATED: list[Schema] = [{"bearerAuth": []}, {"apiKeyAuth": []}]


# --- schema helpers -----------------------------------------------------------------------


def ref(name: str, kind: str = "schemas") -> Schema:
    """A `$ref` to the component `name` of `kind` (schemas, responses, parameters, ...)."""
    return {"$ref": f"#/components/{kind}/{name}"}


def _with(schema: Schema, description: str, extra: Mapping[str, Any]) -> Schema:
    result = {**schema, **extra}
    if description:
        result["description"] = description
    return result


def string(description: str = "", **extra: Any) -> Schema:
    return _with({"type": "string"}, description, extra)


def integer(description: str = "", **extra: Any) -> Schema:
    return _with({"type": "integer"}, description, extra)


def boolean(description: str = "", **extra: Any) -> Schema:
    return _with({"type": "boolean"}, description, extra)


def array(items: Schema, description: str = "", **extra: Any) -> Schema:
    return _with({"type": "array", "items": items}, description, extra)


def nullable(schema: Schema) -> Schema:
    """`schema` or JSON null (3.1 spells it as a list of types)."""
    return {**schema, "type": [schema["type"], "null"]}


def free_object(description: str) -> Schema:
    """A JSON object of any members."""
    return {"type": "object", "additionalProperties": True, "description": description}


def obj(
    properties: dict[str, Schema], *, required: Iterable[str] = (), description: str = ""
) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if names := list(required):
        schema["required"] = names
    return _with(schema, description, {})


def timestamp(description: str) -> Schema:
    """A date-time string (UTC)."""
    return string(description, format="date-time")


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def response(description: str, schema: Schema | None = None, **headers: Schema) -> Schema:
    """A response, with a JSON body of `schema` if given and the given headers."""
    result: Schema = {"description": description}
    if schema is not None:
        result["content"] = json_content(schema)
    if headers:
        result["headers"] = headers
    return result


# --- what the services share ----------------------------------------------------------------


def google_error(
    description: str,
    *,
    status: str,
    message: str = "",
    details: str = "",
    type_url: str = "",
    field: str = "",
    violation: str = "",
) -> Schema:
    """The `GoogleError` schema: the body of embedpipe/http/errors.py's `error_body`.

    The shape is the shared one; the descriptions (of the schema, of `error.status`, ...)
    are each document's own, empty ones are left out.
    """
    violations = obj(
        {"field": string(field), "description": string(violation)},
        required=["field", "description"],
    )
    bad_request = obj(
        {"@type": string(type_url), "fieldViolations": array(violations)}, required=["@type"]
    )
    return obj(
        {
            "error": obj(
                {
                    "code": integer("The HTTP status."),
                    "status": string(status),
                    "message": string(message),
                    "details": array(bad_request, details),
                },
                required=["code", "status", "message", "details"],
            )
        },
        required=["error"],
        description=description,
    )


def security_schemes(bearer_description: str) -> dict[str, Schema]:
    """`bearerAuth` and `apiKeyAuth`: an API key as a bearer token or in X-API-Key."""
    return {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": bearer_description},
        "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }


def probe_schemas(dependencies: Iterable[str]) -> dict[str, Schema]:
    """`Health` and `Readiness`: the bodies of `/healthz` and `/readyz`
    (embedpipe/http/probes.py), with the names of the checked dependencies."""
    names = ", ".join(f'"{name}"' for name in dependencies)
    return {
        "Health": obj({"status": string(enum=["ok"])}, required=["status"]),
        "Readiness": obj(
            {
                "status": string(enum=["ready", "not ready"]),
                "checks": {
                    "type": "object",
                    "additionalProperties": string(),
                    "description": f'Each dependency ({names}): "ok" or why not.',
                },
            },
            required=["status", "checks"],
        ),
    }


def public_operation(operation_id: str, summary: str, responses: dict[int, Schema]) -> Schema:
    """An operational route: no API key."""
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["operations"],
        "security": [],
        "responses": {str(status): r for status, r in responses.items()},
    }


def probe_paths(readiness: str) -> dict[str, Schema]:
    """`/healthz` and `/readyz`; `readiness` says what ready means."""
    return {
        "/healthz": {
            "get": public_operation(
                "healthz", "Liveness.", {200: response("Alive.", ref("Health"))}
            )
        },
        "/readyz": {
            "get": public_operation(
                "readyz",
                f"Readiness: {readiness}",
                {
                    200: response("Ready.", ref("Readiness")),
                    503: response("Not ready; checks say why.", ref("Readiness")),
                },
            )
        },
    }


def openapi_path() -> dict[str, Schema]:
    """`/openapi.json`: the document itself."""
    return {
        "/openapi.json": {
            "get": public_operation(
                "openapi",
                "This document.",
                {200: response("The OpenAPI document.", {"type": "object"})},
            )
        }
    }


def openapi_document(
    *,
    title: str,
    version: str,
    description: str,
    tags: Mapping[str, str],
    paths: dict[str, Schema],
    components: Schema,
) -> Schema:
    """An OpenAPI 3.1 document; `tags` maps each tag to its description."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": description,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": name, "description": text} for name, text in tags.items()],
        "paths": paths,
        "components": components,
    }


def openapi_handler(
    build: Callable[[], Schema],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A `GET /openapi.json` handler that answers the document `build` makes afresh."""

    async def openapi_json(request: web.Request) -> web.Response:
        """`GET /openapi.json`."""
        return web.json_response(build())

    return openapi_json
