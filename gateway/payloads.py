"""JSON bodies → protobuf requests, naming every missing or mistyped field.

Only shape is checked here (JSON types); the embedding server owns the rules about values
(lengths, limits, allowed queues), so they hold for gRPC clients too.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.http_errors import Violation
from gateway.errors import GatewayError

JSON_TYPES = ("application/json",)
_REQUIRED_STRINGS = ("document_id", "collection_id", "tenant_id", "task_id", "callback_queue")


async def read_json(request: web.Request) -> Any:
    """The request's JSON body: 415 for another content type, 400 for broken JSON.

    A body over the configured size limit makes aiohttp raise 413 while reading.
    """
    if request.content_type not in JSON_TYPES:
        raise GatewayError(
            415, f"Content-Type must be application/json, not {request.content_type!r}"
        )
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge ints, deep nesting
        raise GatewayError(
            400, f"body: not valid JSON: {exc}", violations=(Violation("body", "not valid JSON"),)
        ) from None


def _string(
    body: dict[str, Any],
    name: str,
    violations: list[Violation],
    *,
    required: bool,
    where: str = "",
) -> str:
    """`body[name]` if it is a string; else records why not under `<where>.<name>`."""
    field = f"{where}.{name}" if where else name
    value = body.get(name)
    if value is None:
        if required:
            violations.append(Violation(field, "is required"))
        return ""
    if not isinstance(value, str):
        violations.append(Violation(field, f"must be a string, not {type(value).__name__}"))
        return ""
    return value


def parse_generate(body: Any) -> pb.GenerateEmbeddingsRequest:
    """The seed's request, field for field; 400 naming every bad field."""
    try:
        return _parse_generate(body)
    except (ValueError, OverflowError) as exc:  # e.g. a lone surrogate, a huge number
        raise unrepresentable(exc) from None


def unrepresentable(exc: Exception) -> GatewayError:
    """400 for JSON that is valid but cannot be carried: lone surrogates, huge numbers."""
    return GatewayError.bad_request(
        [Violation("body", f"holds a value that cannot be represented: {exc}")]
    )


def _parse_generate(body: Any) -> pb.GenerateEmbeddingsRequest:
    if not isinstance(body, dict):
        raise GatewayError.bad_request([Violation("body", "must be a JSON object")])
    violations: list[Violation] = []
    request = pb.GenerateEmbeddingsRequest(model=_string(body, "model", violations, required=False))
    for name in _REQUIRED_STRINGS:
        setattr(request, name, _string(body, name, violations, required=True))
    chunks = body.get("chunks")
    if chunks is None:
        violations.append(Violation("chunks", "is required"))
    elif not isinstance(chunks, list):
        violations.append(Violation("chunks", f"must be an array, not {type(chunks).__name__}"))
    else:
        for i, item in enumerate(chunks):
            where = f"chunks[{i}]"
            if not isinstance(item, dict):
                violations.append(Violation(where, "must be an object"))
                continue
            chunk = request.chunks.add(
                chunk_id=_string(item, "chunk_id", violations, required=True, where=where),
                text=_string(item, "text", violations, required=True, where=where),
            )
            metadata = item.get("metadata")
            if isinstance(metadata, dict):
                chunk.metadata.update(metadata)
            elif metadata is not None:
                violations.append(Violation(f"{where}.metadata", "must be an object"))
    if violations:
        raise GatewayError.bad_request(violations)
    return request
