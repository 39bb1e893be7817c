"""JSON bodies → protobuf requests, naming every missing or mistyped field.

Only shape is checked here (JSON types); the embedding server owns the rules about values
(lengths, limits, allowed queues), so they hold for gRPC clients too.
"""

from __future__ import annotations

from typing import Any

from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.http.errors import HttpError
from embedpipe.violations import FieldViolation

_REQUIRED_STRINGS = ("document_id", "collection_id", "tenant_id", "task_id", "callback_queue")


def _string(
    body: dict[str, Any],
    name: str,
    violations: list[FieldViolation],
    *,
    required: bool,
    where: str = "",
) -> str:
    """`body[name]` if it is a string; else records why not under `<where>.<name>`."""
    field = f"{where}.{name}" if where else name
    value = body.get(name)
    if value is None:
        if required:
            violations.append(FieldViolation(field, "is required"))
        return ""
    if not isinstance(value, str):
        violations.append(FieldViolation(field, f"must be a string, not {type(value).__name__}"))
        return ""
    return value


def parse_generate(body: Any) -> pb.GenerateEmbeddingsRequest:
    """The generate request, field for field; 400 naming every bad field."""
    if not isinstance(body, dict):
        raise HttpError.bad_field("body", "must be a JSON object")
    violations: list[FieldViolation] = []
    request = pb.GenerateEmbeddingsRequest(model=_string(body, "model", violations, required=False))
    for name in _REQUIRED_STRINGS:
        setattr(request, name, _string(body, name, violations, required=True))
    chunks = body.get("chunks")
    if chunks is None:
        violations.append(FieldViolation("chunks", "is required"))
    elif not isinstance(chunks, list):
        violations.append(
            FieldViolation("chunks", f"must be an array, not {type(chunks).__name__}")
        )
    else:
        for i, item in enumerate(chunks):
            where = f"chunks[{i}]"
            if not isinstance(item, dict):
                violations.append(FieldViolation(where, "must be an object"))
                continue
            chunk = request.chunks.add(
                chunk_id=_string(item, "chunk_id", violations, required=True, where=where),
                text=_string(item, "text", violations, required=True, where=where),
            )
            metadata = item.get("metadata")
            if isinstance(metadata, dict):
                chunk.metadata.update(metadata)
            elif metadata is not None:
                violations.append(FieldViolation(f"{where}.metadata", "must be an object"))
    if violations:
        raise HttpError.bad_request(violations)
    return request
