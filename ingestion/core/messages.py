"""Rows of the store as the messages the API answers with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from embedpipe.ingestion.v1 import resources_pb2 as pb
from embedpipe.protojson import struct_of
from embedpipe.task_status import TaskStatus, progress


def _time(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _optional(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """Those of `names` the row has a value for (unset fields are null in JSON)."""
    return {name: row[name] for name in names if row.get(name) is not None}


def collection(row: dict[str, Any]) -> pb.Collection:
    return pb.Collection(
        tenant_id=row["tenant_id"],
        collection_id=row["collection_id"],
        model=row["model"],
        dimensions=row["dimensions"],
        chunk_tokens=row["chunk_tokens"],
        overlap_tokens=row["overlap_tokens"],
        metadata=struct_of(row["metadata"]),
        created_at=_time(row["created_at"]),
        document_count=int(row.get("document_count") or 0),
        text_search_config=row["text_search_config"],
        chunk_count=row["chunk_count"],
        **_optional(row, "reembed_task_id"),
    )


def document(row: dict[str, Any]) -> pb.Document:
    return pb.Document(
        tenant_id=row["tenant_id"],
        collection_id=row["collection_id"],
        document_id=row["document_id"],
        metadata=struct_of(row["metadata"]),
        status=row["status"],
        chunk_count=row["chunk_count"],
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
        **_optional(row, "filename", "content_type", "content_hash", "current_task_id"),
    )


def task(row: dict[str, Any]) -> pb.Task:
    message = pb.Task(
        tenant_id=row["tenant_id"],
        task_id=row["task_id"],
        collection_id=row["collection_id"],
        document_id=row["document_id"],
        status=row["status"],
        chunks_total=row["chunks_total"],
        chunks_embedded=row["chunks_embedded"],
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
        progress=progress(TaskStatus(row["status"]), row["chunks_total"], row["chunks_embedded"]),
        kind=row["kind"],
        **_optional(row, "content_hash", "error_code", "error_message", "model"),
    )
    if row.get("finished_at") is not None:
        message.finished_at.CopyFrom(_time(row["finished_at"]))
    return message


def search_result(row: dict[str, Any]) -> pb.SearchResult:
    return pb.SearchResult(
        document_id=row["document_id"],
        chunk_id=row["chunk_id"],
        position=row["position"],
        text=row["text"],
        metadata=struct_of(row["metadata"]),
        score=row["score"],
        **_optional(row, "similarity", "vector_rank", "keyword_rank"),
    )
