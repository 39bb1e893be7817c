"""The ingestion job stream: an extracted document waiting to be chunked and embedded, or
the next step of a re-embed (`kind` reembed)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from embedpipe import tracing
from embedpipe.streams import StreamEntry
from ingestion.chunking import CHUNKING_VERSION
from ingestion.extract import DocFormat, ExtractedDoc, Section
from ingestion.keys import IngestionKeys


def content_hash(doc: ExtractedDoc, collection: dict[str, Any]) -> str:
    """What decides whether a re-upload changes anything: the text and how it is chunked."""
    identity = json.dumps(
        [
            CHUNKING_VERSION,
            # Not the model: a model change re-embeds every chunk (ReembedCollection), and
            # a document uploaded again after it is the same document.
            collection["chunk_tokens"],
            collection["overlap_tokens"],
            [list(s.heading_path) for s in doc.sections],
            doc.text,
        ]
    )
    return hashlib.sha256(identity.encode()).hexdigest()


def encode_doc(doc: ExtractedDoc) -> bytes:
    return json.dumps(asdict(doc)).encode()


def decode_doc(raw: bytes) -> ExtractedDoc:
    data = json.loads(raw)
    return ExtractedDoc(
        format=DocFormat(data["format"]),
        text=data["text"],
        sections=tuple(
            Section(
                heading_path=tuple(s["heading_path"]),
                text=s["text"],
                start=s["start"],
                page=s["page"],
                keep_whole=tuple((a, b) for a, b in s.get("keep_whole", ())),
            )
            for s in data["sections"]
        ),
        title=data["title"],
        page_count=data["page_count"],
        warnings=tuple(data["warnings"]),
    )


async def enqueue_job(
    redis: aioredis.Redis,
    keys: IngestionKeys,
    task: dict[str, Any],
    doc: ExtractedDoc,
    digest: str,
    metadata: dict[str, Any],
) -> None:
    """Put an extracted document on the job stream (never trimmed; entries go once acked),
    with the trace it belongs to when tracing is on."""
    fields: dict[FieldT, EncodableT] = {
        "tenant_id": task["tenant_id"],
        "task_id": task["task_id"],
        "collection_id": task["collection_id"],
        "document_id": task["document_id"],
        "content_hash": digest,
        "metadata": json.dumps(metadata),
        "doc": encode_doc(doc),
    }
    if traceparent := tracing.traceparent():
        fields[tracing.TRACEPARENT] = traceparent
    await redis.xadd(keys.jobs, fields)


#: The `kind` field of a re-embed's step on the job stream.
REEMBED_STEP = "reembed"


async def enqueue_reembed_step(
    redis: aioredis.Redis, keys: IngestionKeys, tenant_id: str, task_id: str
) -> None:
    """Queue the next step of a re-embed (reembed_store.step): copy, send, or switch."""
    await redis.xadd(keys.jobs, {"kind": REEMBED_STEP, "tenant_id": tenant_id, "task_id": task_id})


def job_fields(entry: StreamEntry) -> dict[str, str]:
    """The text fields of a job entry (everything but the document)."""
    return {k.decode(): v.decode() for k, v in entry.fields.items() if k != b"doc"}
