"""Our services' OpenAPI 3.1 documents: generated from the protos, plus what only HTTP has.

`ProtoDescriber` makes the schemas and operations of the routes whose messages are in
protos (embedpipe/http/proto_routes.py) from the messages' descriptors and comments. The
rest is what only HTTP has, written here once: the `GoogleError` schema of
embedpipe/http/errors.py's error body, the API-key security schemes, the `/healthz`,
`/readyz` and `/openapi.json` operations, small schema helpers for HTTP-only bodies, and
the skeleton of a document. Each service assembles its document in its `openapi.py`;
scripts/gen_docs.py writes them out, and the services serve what it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from embedpipe.http.proto_routes import ProtoRoute

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


def metrics_path() -> dict[str, Schema]:
    """`/metrics`: the process's Prometheus metrics (embedpipe/metrics.py)."""
    return {
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
        }
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


def document_file(path: Path) -> Callable[[], Schema]:
    """The document scripts/gen_docs.py wrote to `path`, read once."""

    @cache
    def document() -> Schema:
        loaded: Schema = json.loads(path.read_text(encoding="utf-8"))
        return loaded

    return document


def openapi_handler(
    document: Callable[[], Schema],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A `GET /openapi.json` handler that answers `document()`."""

    async def openapi_json(request: web.Request) -> web.Response:
        """`GET /openapi.json`."""
        return web.json_response(document())

    return openapi_json


# --- generated from the protos ----------------------------------------------------------------

_SCALAR_SCHEMAS: dict[int, Schema] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "int32", "minimum": 0},
    # The JSON mapping writes 64-bit integers as strings; it reads either.
    FieldDescriptor.TYPE_INT64: {"type": ["integer", "string"], "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": ["integer", "string"], "format": "int64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": ["integer", "string"], "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": ["integer", "string"], "format": "int64"},
    FieldDescriptor.TYPE_FIXED64: {"type": ["integer", "string"], "format": "int64"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
}
_SUCCESS = {200: "OK.", 201: "Created.", 202: "Accepted.", 204: "Done; no body."}


def _or_null(schema: Schema) -> Schema:
    if "$ref" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*types, "null"]}


def _nested(names: Collection[str], field: str) -> list[str]:
    """Of dotted `names`, those under `field`, without it."""
    return [name.split(".", 1)[1] for name in names if name.startswith(field + ".")]


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


class ProtoDescriber:
    """OpenAPI schemas and operations of `ProtoRoute`s, from the messages' descriptors and
    the protos' comments (`comments`: full name → text, embedpipe/protodoc.py).

    A message an API answers with is described as it is written: every field present,
    a field that may be unset nullable. A message an API is sent lists its fields, the
    route's required ones required; fields the path carries are left out of the body.
    """

    def __init__(self, comments: Mapping[str, str]) -> None:
        self.comments = comments
        self.schemas: dict[str, Schema] = {}

    def _describe(self, schema: Schema, full_name: str) -> Schema:
        if text := self.comments.get(full_name):
            return {**schema, "description": text}
        return schema

    def field_schema(
        self, field: FieldDescriptor, *, answer: bool, required: Collection[str] = ()
    ) -> Schema:
        """`required`: of a message field's own fields, those a request must set."""
        if field.message_type is not None:
            name = field.message_type.full_name
            schema = _WELL_KNOWN.get(name) or self.message_ref(
                field.message_type, answer=answer, required=required
            )
        elif field.enum_type is not None:
            schema = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        else:
            schema = _SCALAR_SCHEMAS[field.type]
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        elif answer and field.has_presence:
            schema = _or_null(schema)
        return self._describe(schema, field.full_name)

    def message_ref(
        self,
        message: Descriptor,
        *,
        answer: bool,
        omit: Collection[str] = (),
        required: Collection[str] = (),
    ) -> Schema:
        """A `$ref` to the message's schema, made on first use. `required` names the fields
        a request must set, a nested message's as `field.nested`."""
        fields = [f for f in message.fields if f.name not in omit]
        schema: Schema = {
            "type": "object",
            "properties": {
                f.name: self.field_schema(f, answer=answer, required=_nested(required, f.name))
                for f in fields
            },
        }
        if names := [f.name for f in fields if answer or f.name in required]:
            schema["required"] = names
        schema = self._describe(schema, message.full_name)
        known = self.schemas.setdefault(message.name, schema)
        if known != schema:
            raise ValueError(f"{message.name} is described two ways (sent and answered?)")
        return ref(message.name)

    def operation(self, route: ProtoRoute, error: Callable[[int, str], Schema]) -> Schema:
        """The route's operation; `error(status, reason)` is the response of an error."""
        text = self.comments.get(route.rpc.full_name, "").split("\n\n", 1)
        operation: Schema = {
            "operationId": _lower_camel(route.rpc.name),
            "summary": " ".join(text[0].split()),
        }
        if len(text) > 1:
            operation["description"] = text[1]
        if route.tag:
            operation["tags"] = [route.tag]
        operation["security"] = AUTHENTICATED
        message = _descriptor(route.request_message)
        in_path = route.path_fields
        parameters = [self._parameter(message, name, "path", True) for name in in_path]
        if not route.has_body:
            parameters += [
                self._parameter(message, f.name, "query", f.name in route.required)
                for f in message.fields
                if f.name not in in_path
            ]
        parameters += [dict(extra) for extra in route.parameters]
        if parameters:
            operation["parameters"] = parameters
        if route.has_body:
            body = self.message_ref(message, answer=False, omit=in_path, required=route.required)
            operation["requestBody"] = {
                "required": True,
                "content": {**json_content(body), **route.extra_content},
            }
        operation["responses"] = self._responses(route, error)
        return operation

    def _parameter(self, message: Descriptor, name: str, where: str, required: bool) -> Schema:
        field = message.fields_by_name[name]
        schema = self.field_schema(field, answer=False)
        parameter: Schema = {"name": name, "in": where, "required": required}
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        return {**parameter, "schema": schema}

    def _responses(self, route: ProtoRoute, error: Callable[[int, str], Schema]) -> Schema:
        if route.status == 204:
            success = response(_SUCCESS[204])
        else:
            answer: Descriptor = route.rpc.output_type
            if route.answer is not None:
                answer = cast(Descriptor, answer.fields_by_name[route.answer].message_type)
            success = response(
                _SUCCESS.get(route.status, "OK."), self.message_ref(answer, answer=True)
            )
        errors = {401: "", **route.errors}
        responses = {str(route.status): success} | {
            str(status): error(status, reason) for status, reason in sorted(errors.items())
        }
        responses["default"] = response("Any other error (500: internal error).", ref(GOOGLE_ERROR))
        return responses

    def paths(
        self, routes: Iterable[ProtoRoute], error: Callable[[int, str], Schema]
    ) -> dict[str, Schema]:
        found: dict[str, Schema] = {}
        for route in routes:
            found.setdefault(route.path, {})[route.method.lower()] = self.operation(route, error)
        return found


def _descriptor(message_class: type[Message]) -> Descriptor:
    return cast(Descriptor, message_class.DESCRIPTOR)
