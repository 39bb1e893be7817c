"""Calls on the gateway as the tests make them: the generate request and its errors."""

from __future__ import annotations

from typing import Any

from tests.support.jobs import CALLBACK_QUEUE, SENTENCES

GENERATE = "/api/v1/embeddings/generate"


def seed_payload(**overrides: Any) -> dict[str, Any]:
    """The JSON of the seed's EmbeddingRequestAction."""
    payload: dict[str, Any] = {
        "document_id": "doc-1",
        "collection_id": "col-1",
        "tenant_id": "tenant-a",
        "chunks": [
            {"chunk_id": f"doc-1:{i}", "text": text, "metadata": {"position": i}}
            for i, text in enumerate(SENTENCES[:3])
        ],
        "model": "all-MiniLM-L6-v2",
        "task_id": "task-1",
        "callback_queue": CALLBACK_QUEUE,
    }
    payload.update(overrides)
    return payload


def fields_named(body: dict[str, Any]) -> list[str]:
    return [
        v["field"] for detail in body["error"]["details"] for v in detail.get("fieldViolations", [])
    ]
