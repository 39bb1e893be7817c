"""The seed's `EmbeddingClient.generate_embeddings`: chunks → the Embedding Service over HTTP.

`POST {EMBEDDING_SERVICE_URL}/api/v1/embeddings/generate` with the seed payload; 202 means
accepted. Connection errors, 429 and 503 are retried with backoff (honouring Retry-After);
anything else is final. The vectors come back later on `callback_queue`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp

from ingestion.errors import IngestionError, IngestionErrorCode

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class EmbeddingClient:
    """Posts embedding requests to the gateway on behalf of any tenant (a service key)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        service_key: str,
        *,
        max_attempts: int = 8,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 10.0,
        timeout_s: float = 30.0,
    ) -> None:
        self.session = session
        self.url = base_url.rstrip("/") + "/api/v1/embeddings/generate"
        self.headers = {"Authorization": f"Bearer {service_key}"} if service_key else {}
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
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
    ) -> dict[str, Any]:
        """Send one request; returns the 202 body (job_id, ...)."""
        payload = {
            "document_id": document_id,
            "collection_id": collection_id,
            "tenant_id": tenant_id,
            "chunks": list(chunks),
            "model": model,
            "task_id": task_id,
            "callback_queue": callback_queue,
        }
        for attempt in range(1, self.max_attempts + 1):
            wait_s: float | None = None
            try:
                async with self.session.post(
                    self.url, json=payload, headers=self.headers, timeout=self.timeout
                ) as response:
                    if response.status == 202:
                        body: dict[str, Any] = await response.json()
                        return body
                    text = await response.text()
                    if response.status not in RETRY_STATUSES:
                        raise IngestionError(
                            IngestionErrorCode.EMBEDDING_FAILED,
                            f"embedding service refused the request ({response.status}): "
                            f"{text[:500]}",
                        )
                    retry_after = response.headers.get("Retry-After", "")
                    wait_s = float(retry_after) if retry_after.isdigit() else None
                    reason = f"status {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt == self.max_attempts:
                break
            delay = wait_s if wait_s is not None else self._backoff(attempt)
            log.warning(
                "embedding request retry task_id=%s attempt=%d reason=%s delay_s=%.2f",
                task_id, attempt, reason, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
        raise IngestionError(
            IngestionErrorCode.UNAVAILABLE,
            f"embedding service unavailable after {self.max_attempts} attempts ({reason})",
        )

    def _backoff(self, attempt: int) -> float:
        base: float = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)
