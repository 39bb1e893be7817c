"""OpenAI-compatible routes, so OpenAI SDKs and tools can use embedpipe as their endpoint.

`POST /v1/embeddings` (synchronous, through `Embed`) and `GET /v1/models` (through
`ListModels`) speak OpenAI's request, response and error shapes. The official Python client
asks for base64 by default: little-endian float32 bytes, a quarter of the JSON size.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from aiohttp import web

from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.http.errors import HttpError
from embedpipe.http.json_body import read_json
from embedpipe.http.proto_routes import rpc
from embedpipe.violations import FieldViolation
from gateway.metrics import METRICS
from gateway.upstream import EMBEDDING, deadline_s, forwarded_identity

_SERVICE = pb.DESCRIPTOR.services_by_name["EmbeddingService"]
EMBED, LIST_MODELS = rpc(_SERVICE, "Embed"), rpc(_SERVICE, "ListModels")
ENCODINGS = ("float", "base64")
MAX_DIMENSIONS = 65_536


def parse_embeddings_request(body: Any) -> tuple[pb.EmbedRequest, str]:
    """OpenAI's embeddings request as an EmbedRequest, and the encoding asked for."""
    if not isinstance(body, dict):
        raise HttpError.bad_field("body", "must be a JSON object")
    violations: list[FieldViolation] = []
    request = pb.EmbedRequest()
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        request.inputs.append(raw_input)
    elif isinstance(raw_input, list) and all(isinstance(item, str) for item in raw_input):
        request.inputs.extend(raw_input)
    elif raw_input is None:
        violations.append(FieldViolation("input", "is required"))
    else:
        violations.append(
            FieldViolation(
                "input", "must be a string or an array of strings (token arrays are not supported)"
            )
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        violations.append(FieldViolation("model", "is required and must be a string"))
    else:
        request.model = model
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int):
            violations.append(FieldViolation("dimensions", "must be an integer"))
        elif not 1 <= dimensions <= MAX_DIMENSIONS:
            violations.append(FieldViolation("dimensions", f"must be from 1 to {MAX_DIMENSIONS}"))
        else:
            request.dimensions = dimensions
    encoding = body.get("encoding_format", "float")
    if encoding not in ENCODINGS:
        violations.append(FieldViolation("encoding_format", "must be 'float' or 'base64'"))
    if violations:
        raise HttpError.bad_request(violations)
    return request, str(encoding)


def _encode(values: Any, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()
    return list(values)


async def create_embeddings(request: web.Request) -> web.Response:
    """`POST /v1/embeddings` in OpenAI's shape."""
    message, encoding = parse_embeddings_request(await read_json(request))
    call = request.app[EMBEDDING].Embed(
        message, timeout=deadline_s(request), metadata=forwarded_identity(request)
    )
    reply = await request.app[METRICS].timed(EMBED, call)
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": e.index, "embedding": _encode(e.values, encoding)}
                for e in reply.embeddings
            ],
            "model": reply.model,
            "usage": {
                "prompt_tokens": reply.usage.prompt_tokens,
                "total_tokens": reply.usage.total_tokens,
            },
        }
    )


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models` in OpenAI's shape."""
    call = request.app[EMBEDDING].ListModels(
        pb.ListModelsRequest(), timeout=deadline_s(request), metadata=forwarded_identity(request)
    )
    reply = await request.app[METRICS].timed(LIST_MODELS, call)
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"id": m.name, "object": "model", "created": 0, "owned_by": "embedpipe"}
                for m in reply.models
            ],
        }
    )
