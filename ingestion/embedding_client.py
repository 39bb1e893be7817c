"""`EmbeddingClient.generate_embeddings`: chunks → the Embedding Service over HTTP.

`POST {EMBEDDING_SERVICE_URL}/api/v1/embeddings/generate` with the embedding request; 202
means accepted. Connection errors, 429, 502, 503 and 504 are retried on the one retry policy
(embedpipe/retry.py: backoff, honouring Retry-After); anything else is final. The vectors
come back later on `callback_queue`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from opentelemetry.trace import SpanKind

from embedpipe import tracing
from embedpipe.retry import RetryPolicy, retry_after_s, retrying
from ingestion.errors import IngestionError, IngestionErrorCode

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_RETRY = RetryPolicy(max_attempts=8, base_s=0.25, max_s=10.0)


class _RetryableError(Exception):
    """A failed attempt worth another: the reason, and the wait the server asked for."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class EmbeddingClient:
    """Posts embedding requests to the gateway on behalf of any tenant (a service key)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        service_key: str,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout_s: float = 30.0,
    ) -> None:
        self.session = session
        self.url = base_url.rstrip("/") + "/api/v1/embeddings/generate"
        self.headers = {"Authorization": f"Bearer {service_key}"} if service_key else {}
        self.retry = retry
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def generate_embeddings(
        self,
        *,
        tenant_id: str,
        collection_id: str,
        document_id: str,
        task_id: str,
        model: str,
        chunks: Sequence[dict[str, Any]],
        callback_queue: str,
        dimensions: int | None = None,
    ) -> dict[str, Any]:
        """Send one request; returns the 202 body (job_id, ...). `dimensions` asks a model
        that can shorten its vectors for that many (sent only then: the seed's request has
        no such field)."""
        payload: dict[str, Any] = {
            "document_id": document_id,
            "collection_id": collection_id,
            "tenant_id": tenant_id,
            "chunks": list(chunks),
            "model": model,
            "task_id": task_id,
            "callback_queue": callback_queue,
        }
        if dimensions is not None:
            payload["dimensions"] = dimensions
        what = f"embedding request task_id={task_id}"
        try:
            async for attempt in retrying(
                self.retry, retry_if=lambda exc: isinstance(exc, _RetryableError), what=what
            ):
                with attempt:
                    return await self._post(payload)
        except _RetryableError as exc:
            raise IngestionError(
                IngestionErrorCode.UNAVAILABLE,
                f"embedding service unavailable after {self.retry.max_attempts} attempts ({exc})",
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def send_document(
        self,
        task: Mapping[str, Any],
        document_id: str,
        chunks: Sequence[dict[str, Any]],
        *,
        per_request: int,
        callback_queue: str,
    ) -> int:
        """A document's chunks in requests of at most `per_request`, under the task and
        with the model and vector size it names (`model`, `output_dimensions`); how many
        requests."""
        for start in range(0, len(chunks), per_request):
            await self.generate_embeddings(
                tenant_id=task["tenant_id"],
                collection_id=task["collection_id"],
                document_id=document_id,
                task_id=task["task_id"],
                model=task["model"],
                chunks=chunks[start : start + per_request],
                callback_queue=callback_queue,
                dimensions=task["output_dimensions"],
            )
        return -(-len(chunks) // per_request)

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        with tracing.span(
            "POST /api/v1/embeddings/generate",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "chunks": len(payload["chunks"])},
        ):
            return await self._post_traced(payload)

    async def _post_traced(self, payload: dict[str, Any]) -> dict[str, Any]:
        headers = self.headers
        if traceparent := tracing.traceparent():
            headers = {**headers, tracing.TRACEPARENT: traceparent}
        try:
            async with self.session.post(
                self.url, json=payload, headers=headers, timeout=self.timeout
            ) as response:
                if response.status == 202:
                    body: dict[str, Any] = await response.json()
                    return body
                text = await response.text()
                if response.status in RETRY_STATUSES:
                    raise _RetryableError(
                        f"status {response.status}", retry_after_s(response.headers)
                    )
                raise IngestionError(
                    IngestionErrorCode.EMBEDDING_FAILED,
                    f"embedding service refused the request ({response.status}): {text[:500]}",
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
