"""The callback JSON the worker pushes onto a job's `callback_queue`.

Field names are the contract's (EmbeddingCallback in protos/embedpipe/embedding/v1/callback.proto
documents them); `docs/contracts.md` shows examples and `docs/callback.schema.json` is the
JSON Schema. The JSON is written directly rather than through protobuf's json_format:
that would print float vectors through slow pure-Python paths and drop empty strings.
orjson writes it, each vector straight from its float32 array, with the shortest digits
that read back as the same float32 (docs/libraries.md: 16x faster than the standard
library for a job of 150 chunks, and 45% fewer bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from embedding.errors import ErrorCode
from embedding.providers.base import Vectors
from embedpipe.embedding.v1 import embedding_service_pb2 as pb

STATUS_SUCCESS = "success"
STATUS_ERROR = "error"


def _envelope(
    request: pb.GenerateEmbeddingsRequest, job_id: str, status: str, traceparent: str
) -> dict[str, Any]:
    body = {
        "task_id": request.task_id,
        "document_id": request.document_id,
        "collection_id": request.collection_id,
        "tenant_id": request.tenant_id,
        "status": status,
        "job_id": job_id,
        "model": request.model,
        "pushed_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if traceparent:
        body["traceparent"] = traceparent
    return body


def success_callback(
    request: pb.GenerateEmbeddingsRequest,
    job_id: str,
    chunk_ids: Sequence[str],
    vectors: Vectors,
    prompt_tokens: int,
    traceparent: str = "",
) -> bytes:
    """The JSON of a job that succeeded: one `{chunk_id, embedding}` per chunk."""
    body = _envelope(request, job_id, STATUS_SUCCESS, traceparent)
    body["dimensions"] = int(vectors.shape[1])
    body["embeddings"] = [
        {"chunk_id": chunk_id, "embedding": row}
        for chunk_id, row in zip(chunk_ids, np.ascontiguousarray(vectors, np.float32), strict=True)
    ]
    body["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def error_callback(
    request: pb.GenerateEmbeddingsRequest,
    job_id: str,
    code: ErrorCode,
    message: str,
    traceparent: str = "",
) -> bytes:
    """The JSON of a job that failed, with a stable `error_code`."""
    body = _envelope(request, job_id, STATUS_ERROR, traceparent)
    body["error_message"] = message
    body["error_code"] = code.value
    return orjson.dumps(body)
