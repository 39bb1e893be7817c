"""The OpenAI-compatible upstream misbehaves: it hangs, trickles, rate-limits and fails.

The upstream is the stand-in of tests/support/openai_standin.py (a real HTTP server); the provider,
its client, the retry policy, the worker, Redis and the callbacks are the production ones.
What tests/test_openai_provider.py already covers (one 429 waited out, 500s until the
retries run out, 400s) is not repeated here.
"""

from __future__ import annotations

import email.utils
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import numpy as np
import pytest
import redis.asyncio as aioredis

from embedding.errors import EmbeddingError, ErrorCode
from embedding.jobs import JobQueue
from embedding.keys import EmbeddingKeys
from embedding.providers.openai_api import OpenAIProvider
from embedding.providers.registry import ProviderRegistry
from embedding.retry import call_with_retries
from embedding.settings import EmbeddingSettings, ModelSpec
from embedpipe.retry import RetryPolicy
from tests.support.jobs import CALLBACK_QUEUE, SENTENCES, pop_callbacks, seed_request
from tests.support.openai_standin import (
    DIMENSIONS,
    MODEL,
    STALLED,
    OpenAIStandin,
    callback_vectors,
    expected_vectors,
    loaded_provider,
    running_standin,
)
from tests.support.services import running_worker

#: The upstream request timeout of these tests (the model's `timeout_s`; 60 s by default).
TIMEOUT_S = 0.5


@pytest.fixture
async def standin() -> AsyncIterator[OpenAIStandin]:
    async with running_standin(default_dimensions=DIMENSIONS) as server:
        yield server


@pytest.fixture
async def provider(standin: OpenAIStandin) -> AsyncIterator[OpenAIProvider]:
    async with loaded_provider(standin, timeout_s=TIMEOUT_S) as loaded:
        yield loaded


@pytest.fixture
async def queue(redis: aioredis.Redis) -> JobQueue:
    jobs = JobQueue(redis, EmbeddingKeys(), dedupe_ttl_s=3600)
    await jobs.ensure_group()
    return jobs


def worker_settings(settings: EmbeddingSettings, *, max_retries: int) -> EmbeddingSettings:
    """The test settings serving only MODEL, with quick backoff between retries."""
    return replace(
        settings,
        models=(ModelSpec(name=MODEL, provider="openai", dimensions=DIMENSIONS),),
        default_model=MODEL,
        worker=replace(settings.worker, provider_max_retries=max_retries, retry_base_s=0.05),
    )


def gaps_s(standin: OpenAIStandin) -> list[float]:
    """Seconds between the arrivals of consecutive requests at the stand-in."""
    arrivals = [r.received_at for r in standin.requests]
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


# --- a request that does not come back ---------------------------------------------------


def stall(standin: OpenAIStandin, kind: str) -> None:
    if kind == "never answers":
        standin.hang_next()
    elif kind == "answers after 30 s":
        standin.hang_next(answer_after_s=30)
    else:  # "trickles its answer": never silent long enough for a per-read timeout
        standin.trickle_next(byte_every_s=0.05)


@pytest.mark.parametrize("kind", ["never answers", "answers after 30 s", "trickles its answer"])
async def test_a_stalled_request_times_out_as_transient_and_the_retry_succeeds(
    provider: OpenAIProvider, standin: OpenAIStandin, kind: str, figure: Callable[[str], None]
) -> None:
    stall(standin, kind)
    started = time.monotonic()
    with pytest.raises(EmbeddingError) as caught:
        await provider.embed(SENTENCES[:2])
    gave_up_after = time.monotonic() - started

    assert caught.value.code == ErrorCode.PROVIDER_TIMEOUT and caught.value.transient
    assert f"within {TIMEOUT_S:g}s" in caught.value.message
    assert TIMEOUT_S * 0.9 <= gave_up_after < TIMEOUT_S + 1.0

    # Through the retry policy, the same stall is waited out once and then retried.
    stall(standin, kind)
    started = time.monotonic()
    output = await call_with_retries(
        lambda: provider.embed(SENTENCES[:2]),
        RetryPolicy(max_attempts=3, base_s=0.01, max_s=1),
        what="test",
    )
    took = time.monotonic() - started

    assert np.array_equal(output.vectors, expected_vectors(SENTENCES[:2]))
    assert standin.statuses == [STALLED, STALLED, 200]
    assert TIMEOUT_S * 0.9 <= gaps_s(standin)[1] < TIMEOUT_S + 1.0
    figure(
        f"\nupstream {kind}: abandoned after {gave_up_after:.2f} s (timeout {TIMEOUT_S} s); "
        f"with a retry, vectors after {took:.2f} s"
    )


async def test_a_job_whose_upstream_always_hangs_gets_a_timeout_error_callback_in_bounded_time(
    settings: EmbeddingSettings,
    provider: OpenAIProvider,
    standin: OpenAIStandin,
    queue: JobQueue,
    redis: aioredis.Redis,
    figure: Callable[[str], None],
) -> None:
    own = worker_settings(settings, max_retries=2)
    standin.hang_next(times=100)
    accepted = await queue.enqueue(seed_request(model=MODEL))
    attempts = 1 + own.worker.provider_max_retries
    # Every attempt waits out the timeout; the backoff between them is at most max_s each.
    bound_s = attempts * TIMEOUT_S + own.worker.provider_max_retries * 0.2 + 2.0

    async with running_worker(own, ProviderRegistry({MODEL: provider}, MODEL)):
        started = time.monotonic()
        (callback,) = await pop_callbacks(redis, 1, timeout_s=bound_s)
        took = time.monotonic() - started
        assert await redis.brpop([CALLBACK_QUEUE], timeout=1) is None

    assert callback["status"] == "error" and callback["job_id"] == accepted.job_id
    assert callback["error_code"] == "PROVIDER_TIMEOUT"
    assert callback["error_message"].startswith(f"gave up after {attempts} attempts: ")
    assert f"did not answer within {TIMEOUT_S:g}s" in callback["error_message"]
    assert standin.statuses == [STALLED] * attempts
    assert all(gap >= TIMEOUT_S * 0.9 for gap in gaps_s(standin))
    assert attempts * TIMEOUT_S * 0.9 <= took < bound_s
    assert await redis.xlen(EmbeddingKeys().jobs) == 0
    figure(
        f"\nupstream always hangs: error callback PROVIDER_TIMEOUT after {took:.2f} s "
        f"({attempts} attempts of {TIMEOUT_S} s; bound {bound_s:.1f} s)"
    )


# --- rate limits and server errors, mixed ------------------------------------------------


async def test_mixed_429s_and_5xx_then_success_give_one_success_callback(
    settings: EmbeddingSettings,
    provider: OpenAIProvider,
    standin: OpenAIStandin,
    queue: JobQueue,
    redis: aioredis.Redis,
    figure: Callable[[str], None],
) -> None:
    own = worker_settings(settings, max_retries=5)
    standin.fail_next(429, retry_after=0.6)
    standin.fail_next(500)
    standin.fail_next(503, retry_after=0.4)  # a 5xx may carry Retry-After too
    standin.fail_next(429, retry_after="0.3")
    request = seed_request(texts=SENTENCES[:3], model=MODEL)
    accepted = await queue.enqueue(request)

    async with running_worker(own, ProviderRegistry({MODEL: provider}, MODEL)):
        (callback,) = await pop_callbacks(redis, 1, timeout_s=15)
        assert await redis.brpop([CALLBACK_QUEUE], timeout=1) is None

    assert callback["status"] == "success" and callback["job_id"] == accepted.job_id
    assert [e["chunk_id"] for e in callback["embeddings"]] == [c.chunk_id for c in request.chunks]
    assert np.allclose(callback_vectors(callback), expected_vectors(SENTENCES[:3]), atol=1e-6)
    assert standin.statuses == [429, 500, 503, 429, 200]
    after_429, after_500, after_503, after_second_429 = gaps_s(standin)
    # Each retry waited at least what the upstream asked for.
    assert after_429 >= 0.6 and after_503 >= 0.4 and after_second_429 >= 0.3
    # Without a Retry-After, our own backoff (the first one: 0.5-1 x retry_base_s).
    assert after_500 < 0.6
    assert await redis.xlen(EmbeddingKeys().jobs) == 0
    figure(
        "\n429 (Retry-After 0.6), 500, 503 (Retry-After 0.4), 429 (Retry-After 0.3), 200: "
        f"retried after {after_429:.2f}, {after_500:.2f}, {after_503:.2f}, "
        f"{after_second_429:.2f} s; one success callback"
    )


async def test_a_retry_after_given_as_an_http_date_is_waited_out(
    provider: OpenAIProvider, standin: OpenAIStandin, figure: Callable[[str], None]
) -> None:
    not_before = time.time() + 2
    standin.fail_next(503, retry_after=email.utils.formatdate(not_before, usegmt=True))
    # The date has whole seconds: the upstream asks to wait until its second began.
    not_before_monotonic = int(not_before) - time.time() + time.monotonic()

    output = await call_with_retries(
        lambda: provider.embed(SENTENCES[:2]),
        RetryPolicy(max_attempts=3, base_s=0.01, max_s=5),
        what="test",
    )

    assert np.array_equal(output.vectors, expected_vectors(SENTENCES[:2]))
    assert standin.statuses == [503, 200]
    retried_at = standin.requests[1].received_at
    assert retried_at >= not_before_monotonic - 0.05
    figure(f"\n503 with an HTTP-date Retry-After: retried after {gaps_s(standin)[0]:.2f} s")


async def test_a_job_rate_limited_past_its_retries_fails_as_rate_limited(
    settings: EmbeddingSettings,
    provider: OpenAIProvider,
    standin: OpenAIStandin,
    queue: JobQueue,
    redis: aioredis.Redis,
) -> None:
    own = worker_settings(settings, max_retries=2)
    standin.fail_next(429, retry_after=0.2, times=10)
    accepted = await queue.enqueue(seed_request(model=MODEL))

    async with running_worker(own, ProviderRegistry({MODEL: provider}, MODEL)):
        (callback,) = await pop_callbacks(redis, 1, timeout_s=10)

    assert callback["status"] == "error" and callback["job_id"] == accepted.job_id
    assert callback["error_code"] == "PROVIDER_RATE_LIMITED"
    assert callback["error_message"].startswith("gave up after 3 attempts: ")
    assert "429" in callback["error_message"]
    assert standin.statuses == [429] * 3
    assert all(gap >= 0.2 for gap in gaps_s(standin))
