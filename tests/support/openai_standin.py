"""A stand-in for the vendor: an OpenAI-compatible `POST /v1/embeddings` on a free port.

It answers like OpenAI (float lists or base64 little-endian float32), with vectors that are
a pure function of the text, so a test can compute what it should receive. It records
every request it is sent, and it can be told to misbehave: `fail_next` queues canned
failures (429 with Retry-After, 500, 400, ...), `hang_next` requests it accepts and then
never answers (or answers only after a long delay), and `trickle_next` answers whose body
arrives one byte at a time. Scripted behaviours are used up in the order they were queued,
one per request, before it succeeds again. Any request containing `REJECT_MARKER` in one of
its inputs is refused with a 400.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from embedding.providers.base import Vectors
from embedding.providers.openai_api import OpenAIProvider
from embedding.settings import ModelSpec
from tests.support.services import serving_app

DEFAULT_DIMENSIONS = 64
#: An input containing this text makes the whole request a 400 (a permanent refusal).
REJECT_MARKER = "<<standin: reject this input>>"
#: The status recorded for a request the stand-in held up (hung, delayed or trickled).
STALLED = 0

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_exceeded",
}


def standin_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> Vectors:
    """The unit vector the stand-in returns for `text`: seeded by the text's sha256."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    normalized: Vectors = (vector / np.linalg.norm(vector)).astype(np.float32)
    return normalized


def standin_tokens(text: str) -> int:
    """The prompt tokens the stand-in reports for `text` (one per word, at least one)."""
    return max(1, len(text.split()))


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stand-in received, and the status it answered with."""

    model: str
    inputs: list[str]
    dimensions: int | None
    encoding_format: str | None
    authorization: str | None
    status: int
    #: `time.monotonic()` when the request arrived.
    received_at: float

    @property
    def input_count(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: float | str | None
    code: str | None


@dataclass(frozen=True)
class _Stall:
    """Hold a request: `answer_after_s` None never answers; `byte_every_s` trickles."""

    answer_after_s: float | None = None
    byte_every_s: float | None = None


class OpenAIStandin:
    """The server's state: what it was sent and the misbehaviours it still has to give."""

    def __init__(self, *, default_dimensions: int = DEFAULT_DIMENSIONS) -> None:
        self.default_dimensions = default_dimensions
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self._script: deque[_Failure | _Stall] = deque()
        #: Set when the server stops: held-up requests are let go then.
        self.stopping = asyncio.Event()

    def fail_next(
        self,
        status: int,
        retry_after: float | str | None = None,
        times: int = 1,
        code: str | None = None,
    ) -> None:
        """Answer the next `times` requests with `status` (a Retry-After header, an error code)."""
        self._script.extend(_Failure(status, retry_after, code) for _ in range(times))

    def hang_next(self, times: int = 1, *, answer_after_s: float | None = None) -> None:
        """Accept the next `times` requests and keep them waiting: never answered (until
        the stand-in stops) or, with `answer_after_s`, answered normally that much later."""
        self._script.extend(_Stall(answer_after_s=answer_after_s) for _ in range(times))

    def trickle_next(self, times: int = 1, *, byte_every_s: float = 0.1) -> None:
        """Answer the next `times` requests 200 at once, then send the body one byte every
        `byte_every_s` seconds: an upstream that is slow but never silent for long."""
        self._script.extend(_Stall(byte_every_s=byte_every_s) for _ in range(times))

    @property
    def statuses(self) -> list[int]:
        """The status of every answer so far, in order."""
        return [r.status for r in self.requests]

    @property
    def succeeded(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.status == 200]

    async def handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        raw_input = body.get("input")
        inputs: object = [raw_input] if isinstance(raw_input, str) else raw_input
        texts = [str(t) for t in inputs] if isinstance(inputs, list) else []
        dimensions = body.get("dimensions")
        encoding_format = body.get("encoding_format")
        model = body.get("model")

        received_at = time.monotonic()

        def record(status: int) -> None:
            self.requests.append(
                RecordedRequest(
                    model=str(model),
                    inputs=texts,
                    dimensions=dimensions,
                    encoding_format=encoding_format,
                    authorization=request.headers.get("Authorization"),
                    status=status,
                    received_at=received_at,
                )
            )

        scripted = self._script.popleft() if self._script else None
        if isinstance(scripted, _Failure):
            record(scripted.status)
            return _error(
                scripted.status,
                "scripted failure",
                retry_after=scripted.retry_after,
                code=scripted.code,
            )
        if isinstance(scripted, _Stall):
            record(STALLED)
            answer = self._answer(model, texts, dimensions, encoding_format)
            if scripted.byte_every_s is not None:
                return await self._trickle(request, answer, scripted.byte_every_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), scripted.answer_after_s)
            if self.stopping.is_set():
                return _error(503, "the stand-in is stopping")
            return answer
        problem = _validate(model, inputs, dimensions, encoding_format)
        if problem is None and any(REJECT_MARKER in text for text in texts):
            problem = "an input contains the reject marker"
        if problem is not None:
            record(400)
            return _error(400, problem)
        record(200)
        return self._answer(model, texts, dimensions, encoding_format)

    def _answer(
        self, model: object, texts: list[str], dimensions: object, encoding_format: object
    ) -> web.Response:
        """The answer a well-behaved upstream gives."""
        width = dimensions if isinstance(dimensions, int) else self.default_dimensions
        data = []
        for index, text in enumerate(texts):
            vector = standin_vector(text, width)
            embedding: str | list[float] = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if encoding_format == "base64"
                else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(standin_tokens(text) for text in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _trickle(
        self, request: web.Request, answer: web.Response, byte_every_s: float
    ) -> web.StreamResponse:
        """Send `answer`'s headers now and its body one byte at a time."""
        assert isinstance(answer.body, bytes)
        body = answer.body
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client gave up
            for i in range(len(body)):
                if self.stopping.is_set():
                    break
                await response.write(body[i : i + 1])
                await asyncio.sleep(byte_every_s)
        return response


def _validate(
    model: object, inputs: object, dimensions: object, encoding_format: object
) -> str | None:
    if not isinstance(model, str) or not model:
        return "model must be a non-empty string"
    if (
        not isinstance(inputs, list)
        or not inputs
        or not all(isinstance(t, str) and t for t in inputs)
    ):
        return "input must be a non-empty string or a non-empty list of non-empty strings"
    if len(inputs) > 2048:
        return "input may hold at most 2048 items"
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        return "dimensions must be a positive integer"
    if encoding_format not in (None, "float", "base64"):
        return "encoding_format must be 'float' or 'base64'"
    return None


def _error(
    status: int,
    message: str,
    *,
    retry_after: float | str | None = None,
    code: str | None = None,
) -> web.Response:
    headers = {}
    if isinstance(retry_after, str):
        headers["Retry-After"] = retry_after
    elif retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    error_type = _ERROR_TYPES.get(status, "server_error")
    return web.json_response(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}},
        status=status,
        headers=headers,
    )


@contextlib.asynccontextmanager
async def running_standin(
    *, default_dimensions: int = DEFAULT_DIMENSIONS
) -> AsyncIterator[OpenAIStandin]:
    """Serve a fresh stand-in on 127.0.0.1 and a free port until the block ends."""
    standin = OpenAIStandin(default_dimensions=default_dimensions)
    # Requests of several hundred thousand tokens are megabytes of JSON.
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/embeddings", standin.handle_embeddings)
    async with serving_app(app, access_log=None) as url:
        standin.base_url = f"{url}/v1"
        try:
            yield standin
        finally:
            standin.stopping.set()


MODEL = "text-embedding-3-small"


DIMENSIONS = 64


API_KEY = "sk-standin-test"


@contextlib.asynccontextmanager
async def loaded_provider(standin: OpenAIStandin, **spec: Any) -> AsyncIterator[OpenAIProvider]:
    """An OpenAIProvider for MODEL pointed at the stand-in, loaded until the block ends."""
    provider = OpenAIProvider(
        ModelSpec(
            name=MODEL,
            provider="openai",
            dimensions=DIMENSIONS,
            base_url=standin.base_url,
            api_key=API_KEY,
            supports_dimensions=True,
            **spec,
        )
    )
    await provider.load()
    try:
        yield provider
    finally:
        await provider.close()


def expected_vectors(texts: list[str], dimensions: int = DIMENSIONS) -> np.ndarray[Any, Any]:
    return np.stack([standin_vector(t, dimensions) for t in texts])


def callback_vectors(callback: dict[str, Any]) -> np.ndarray[Any, Any]:
    return np.array([e["embedding"] for e in callback["embeddings"]], dtype=np.float32)
