"""OpenAI (or any OpenAI-compatible server) through the official `AsyncOpenAI` client.

Work is split to respect the API's limits (at most 2048 inputs and 300k tokens per request),
requests run with bounded concurrency, vectors travel base64-encoded (a quarter of the JSON
size) and upstream failures become `EmbeddingError`s that say whether a retry may help.
Retrying is the caller's business (the worker's retry policy), so the client's own
retries are off.

Each request is bounded by the model's `timeout_s` from start to last byte. The client's
own timeout only bounds each wait for the next bytes, so an upstream that trickles its
answer could hold a request for far longer; the whole request is therefore also run under
`asyncio.timeout`. Either way it ends as PROVIDER_TIMEOUT, which is transient (retried).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence

import numpy as np
import openai
from openai import AsyncOpenAI

from embedding.errors import EmbeddingError, ErrorCode
from embedding.providers.base import EmbedOutput, Vectors
from embedding.settings import ModelSpec
from embedpipe.retry import retry_after_s

MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
#: tiktoken fetches its vocabularies from the internet at run time, so token counts are
#: estimated instead: English averages about 4 bytes per token; 3 errs on the safe side.
BYTES_PER_TOKEN_ESTIMATE = 3


def estimate_tokens(text: str) -> int:
    """A conservative (high) token count for an OpenAI model."""
    return max(1, -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN_ESTIMATE))


def split_requests(token_counts: Sequence[int], max_inputs: int) -> list[range]:
    """Consecutive index ranges, each within the per-request input and token limits."""
    ranges: list[range] = []
    start, tokens = 0, 0
    for i, count in enumerate(token_counts):
        if i > start and (i - start >= max_inputs or tokens + count > MAX_TOKENS_PER_REQUEST):
            ranges.append(range(start, i))
            start, tokens = i, 0
        tokens += count
    if start < len(token_counts):
        ranges.append(range(start, len(token_counts)))
    return ranges


def _timed_out(model: str, timeout_s: float) -> EmbeddingError:
    return EmbeddingError(
        ErrorCode.PROVIDER_TIMEOUT,
        f"model {model!r}: upstream did not answer within {timeout_s:g}s",
    )


def _as_error(exc: openai.OpenAIError, model: str, timeout_s: float) -> EmbeddingError:
    if isinstance(exc, openai.APITimeoutError):
        return _timed_out(model, timeout_s)
    if isinstance(exc, openai.APIConnectionError):
        return EmbeddingError(
            ErrorCode.PROVIDER_UNAVAILABLE, f"model {model!r}: upstream unreachable: {exc}"
        )
    if isinstance(exc, openai.APIStatusError):
        retry_after = retry_after_s(exc.response.headers)
        detail = f"model {model!r}: upstream answered {exc.status_code}: {exc.message}"
        if exc.status_code == 429 and exc.code == "insufficient_quota":
            # OpenAI's "out of credit" is a 429 too, but waiting does not fix it.
            return EmbeddingError(ErrorCode.PROVIDER_REJECTED, detail)
        if exc.status_code == 429:
            return EmbeddingError(
                ErrorCode.PROVIDER_RATE_LIMITED, detail, retry_after_s=retry_after
            )
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return EmbeddingError(ErrorCode.PROVIDER_UNAVAILABLE, detail, retry_after_s=retry_after)
        return EmbeddingError(ErrorCode.PROVIDER_REJECTED, detail)
    return EmbeddingError(ErrorCode.PROVIDER_FAILED, f"model {model!r}: {exc}")


class OpenAIProvider:
    """Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._client: AsyncOpenAI | None = None
        self._semaphore = asyncio.Semaphore(spec.max_concurrency)

    @property
    def dimensions(self) -> int:
        return self.spec.dimensions

    @property
    def max_batch_size(self) -> int:
        return min(self.spec.max_batch_size, MAX_INPUTS_PER_REQUEST)

    def healthy(self) -> bool:
        return self._client is not None

    async def load(self) -> None:
        if self._client is not None:
            return
        self._client = AsyncOpenAI(
            api_key=self.spec.api_key or "unset",
            base_url=self.spec.base_url or None,
            timeout=self.spec.timeout_s,
            max_retries=0,
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [estimate_tokens(t) for t in texts]

    def token_bound(self, text: str) -> int | None:
        return estimate_tokens(text)  # the count itself: it is an estimate already

    async def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> EmbedOutput:
        texts = list(texts)
        parts = split_requests(self.count_tokens(texts), self.max_batch_size)
        results = await asyncio.gather(
            *(self._request([texts[i] for i in part], dimensions) for part in parts)
        )
        width = dimensions or self.dimensions
        vectors = (
            np.concatenate([r.vectors for r in results])
            if results
            else np.zeros((0, width), dtype=np.float32)
        )
        return EmbedOutput(vectors, sum(r.prompt_tokens for r in results))

    async def _request(self, texts: list[str], dimensions: int | None) -> EmbedOutput:
        if self._client is None:
            raise EmbeddingError(ErrorCode.NOT_READY, f"model {self.spec.name!r} is not loaded")
        upstream = self.spec.upstream_model or self.spec.name
        timeout_s = self.spec.timeout_s
        async with self._semaphore:
            try:
                async with asyncio.timeout(timeout_s):
                    if dimensions is None:
                        response = await self._client.embeddings.create(
                            model=upstream, input=texts, encoding_format="base64"
                        )
                    else:
                        response = await self._client.embeddings.create(
                            model=upstream,
                            input=texts,
                            encoding_format="base64",
                            dimensions=dimensions,
                        )
            except TimeoutError as exc:
                raise _timed_out(self.spec.name, timeout_s) from exc
            except openai.OpenAIError as exc:
                raise _as_error(exc, self.spec.name, timeout_s) from exc
        if len(response.data) != len(texts):
            raise EmbeddingError(
                ErrorCode.PROVIDER_FAILED,
                f"model {self.spec.name!r}: upstream returned {len(response.data)} vectors "
                f"for {len(texts)} inputs",
            )
        ordered = sorted(response.data, key=lambda item: item.index)
        vectors: Vectors = np.stack([_decode(item.embedding) for item in ordered])
        tokens = response.usage.prompt_tokens if response.usage else 0
        return EmbedOutput(vectors, tokens)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _decode(embedding: object) -> Vectors:
    """A vector sent as base64 little-endian float32, or (from some servers) a float list."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)
