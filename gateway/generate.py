"""`POST /api/v1/embeddings/generate`: an embedding job, answered 202 Accepted."""

from __future__ import annotations

from aiohttp import web

from embedpipe.http.json_body import read_json
from gateway.payloads import parse_generate
from gateway.upstream import EMBEDDING, deadline_s, forwarded_identity


async def generate_embeddings(request: web.Request) -> web.Response:
    """Accept an embedding job; its vectors arrive later as a callback on `callback_queue`."""
    message = parse_generate(await read_json(request))
    reply = await request.app[EMBEDDING].GenerateEmbeddings(
        message, timeout=deadline_s(request), metadata=forwarded_identity(request)
    )
    return web.json_response(
        {
            "job_id": reply.job_id,
            "task_id": reply.task_id,
            "status": "accepted",
            "accepted_at": reply.accepted_time.ToJsonString(),
            "chunk_count": reply.chunk_count,
            "deduplicated": reply.deduplicated,
        },
        status=202,
    )
