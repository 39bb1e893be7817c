"""The OpenAI provider against an OpenAI-compatible stand-in: batching, errors, retries.

The vendor is the one thing the tests stand in for (tests/support/openai_standin.py); the
provider, its AsyncOpenAI client, the worker, Redis and the callbacks are all real.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
import pytest
import redis.asyncio as aioredis

from embedding.errors import EmbeddingError, ErrorCode
from embedding.jobs import JobQueue
from embedding.keys import EmbeddingKeys
from embedding.providers.openai_api import MAX_TOKENS_PER_REQUEST, OpenAIProvider, split_requests
from embedding.providers.registry import ProviderRegistry
from embedding.retry import call_with_retries
from embedding.settings import EmbeddingSettings, ModelSpec
from embedpipe.retry import RetryPolicy
from tests.support.jobs import CALLBACK_QUEUE, SENTENCES, pop_callbacks, seed_request
from tests.support.openai_standin import (
    API_KEY,
    DIMENSIONS,
    MODEL,
    REJECT_MARKER,
    OpenAIStandin,
    callback_vectors,
    expected_vectors,
    loaded_provider,
    running_standin,
)
from tests.support.services import running_worker


@pytest.fixture
async def standin() -> AsyncIterator[OpenAIStandin]:
    async with running_standin(default_dimensions=DIMENSIONS) as server:
        yield server


@pytest.fixture
async def provider(standin: OpenAIStandin) -> AsyncIterator[OpenAIProvider]:
    async with loaded_provider(standin) as loaded:
        yield loaded


async def raised_by(provider: OpenAIProvider, texts: list[str]) -> EmbeddingError:
    with pytest.raises(EmbeddingError) as caught:
        await provider.embed(texts)
    return caught.value


# --- the provider on its own -------------------------------------------------------------


async def test_vectors_come_back_in_input_order_decoded_from_base64(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    texts = SENTENCES[:5]
    output = await provider.embed(texts)

    assert output.vectors.shape == (5, DIMENSIONS) and output.vectors.dtype == np.float32
    assert np.array_equal(output.vectors, expected_vectors(texts))
    assert output.prompt_tokens == sum(len(t.split()) for t in texts)
    (seen,) = standin.requests
    assert seen.encoding_format == "base64"
    assert seen.model == MODEL and seen.inputs == texts and seen.dimensions is None
    assert seen.authorization == f"Bearer {API_KEY}"


async def test_requested_dimensions_are_passed_to_the_upstream(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    output = await provider.embed(SENTENCES[:2], dimensions=16)

    assert output.vectors.shape == (2, 16)
    assert np.array_equal(output.vectors, expected_vectors(SENTENCES[:2], 16))
    assert [r.dimensions for r in standin.requests] == [16]


async def test_more_inputs_than_the_batch_size_are_split_and_reassembled_in_order(
    standin: OpenAIStandin,
) -> None:
    texts = [f"sentence number {n}: {SENTENCES[n % len(SENTENCES)]}" for n in range(7)]
    async with loaded_provider(standin, max_batch_size=3) as provider:
        output = await provider.embed(texts)

    assert np.array_equal(output.vectors, expected_vectors(texts))
    assert sorted(r.input_count for r in standin.requests) == [1, 3, 3]
    sent = sorted((r.inputs for r in standin.requests), key=lambda inputs: texts.index(inputs[0]))
    assert [t for inputs in sent for t in inputs] == texts


async def test_inputs_over_300k_tokens_are_split_across_requests(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    # ~117k estimated tokens each: two fit in one request, a third does not.
    texts = [f"{n} " + "word " * 70_000 for n in range(3)]
    output = await provider.embed(texts)

    assert np.array_equal(output.vectors, expected_vectors(texts))
    assert sorted(r.input_count for r in standin.requests) == [1, 2]


def test_split_requests_respects_the_token_and_input_limits() -> None:
    third = MAX_TOKENS_PER_REQUEST // 3
    assert split_requests([third] * 7, 2048) == [range(0, 3), range(3, 6), range(6, 7)]
    assert split_requests([third + 1] * 3, 2048) == [range(0, 2), range(2, 3)]
    assert split_requests([MAX_TOKENS_PER_REQUEST, 1], 2048) == [range(0, 1), range(1, 2)]
    # One input over the limit still goes out, alone (the upstream truncates or refuses it).
    assert split_requests([1, MAX_TOKENS_PER_REQUEST + 5, 1], 2048) == [
        range(0, 1),
        range(1, 2),
        range(2, 3),
    ]
    assert split_requests([1] * 5000, 2048) == [
        range(0, 2048),
        range(2048, 4096),
        range(4096, 5000),
    ]
    assert split_requests([], 2048) == []


async def test_a_429_is_a_transient_rate_limit_carrying_retry_after(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    standin.fail_next(429, retry_after=1)
    error = await raised_by(provider, SENTENCES[:2])

    assert error.code == ErrorCode.PROVIDER_RATE_LIMITED
    assert error.transient and error.retry_after_s == 1
    # The client does not retry on its own: the worker's policy decides.
    assert standin.statuses == [429]


async def test_an_unreadable_retry_after_falls_back_to_our_own_backoff(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    standin.fail_next(429, retry_after="soon")
    error = await raised_by(provider, SENTENCES[:2])
    assert error.code == ErrorCode.PROVIDER_RATE_LIMITED
    assert error.transient and error.retry_after_s is None


async def test_an_exhausted_quota_is_not_retried(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    standin.fail_next(429, code="insufficient_quota")
    error = await raised_by(provider, SENTENCES[:2])
    assert error.code == ErrorCode.PROVIDER_REJECTED and not error.transient


async def test_retries_wait_out_retry_after_then_succeed(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    standin.fail_next(429, retry_after=1)
    started = time.monotonic()
    output = await call_with_retries(
        lambda: provider.embed(SENTENCES[:2]),
        RetryPolicy(max_attempts=4, base_s=0.01, max_s=30),
        what="test",
    )
    waited = time.monotonic() - started

    assert np.array_equal(output.vectors, expected_vectors(SENTENCES[:2]))
    assert standin.statuses == [429, 200]
    assert waited >= 0.9


async def test_a_400_is_a_permanent_rejection(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    standin.fail_next(400)
    scripted = await raised_by(provider, SENTENCES[:2])
    marked = await raised_by(provider, [SENTENCES[0], f"bad {REJECT_MARKER}"])

    for error in (scripted, marked):
        assert error.code == ErrorCode.PROVIDER_REJECTED and not error.transient
        assert "400" in error.message
    assert standin.statuses == [400, 400]


async def test_a_500_is_transient_upstream_unavailability(
    provider: OpenAIProvider, standin: OpenAIStandin
) -> None:
    standin.fail_next(500)
    error = await raised_by(provider, SENTENCES[:2])
    assert error.code == ErrorCode.PROVIDER_UNAVAILABLE and error.transient


# --- end to end through the worker -------------------------------------------------------


@pytest.fixture
def openai_settings(settings: EmbeddingSettings) -> EmbeddingSettings:
    """The test settings serving only MODEL, with quick provider retries."""
    return replace(
        settings,
        models=(ModelSpec(name=MODEL, provider="openai", dimensions=DIMENSIONS),),
        default_model=MODEL,
        worker=replace(settings.worker, provider_max_retries=2, retry_base_s=0.05),
    )


@pytest.fixture
async def queue(redis: aioredis.Redis) -> JobQueue:
    jobs = JobQueue(redis, EmbeddingKeys(), dedupe_ttl_s=3600)
    await jobs.ensure_group()
    return jobs


async def test_a_job_rate_limited_once_succeeds_after_retry_after(
    openai_settings: EmbeddingSettings,
    provider: OpenAIProvider,
    standin: OpenAIStandin,
    queue: JobQueue,
    redis: aioredis.Redis,
) -> None:
    standin.fail_next(429, retry_after=1)
    request = seed_request(texts=SENTENCES[:3], model=MODEL)
    accepted = await queue.enqueue(request)

    async with running_worker(openai_settings, ProviderRegistry({MODEL: provider}, MODEL)):
        started = time.monotonic()
        (callback,) = await pop_callbacks(redis, 1)
        waited = time.monotonic() - started
        assert await redis.brpop([CALLBACK_QUEUE], timeout=1) is None

    assert callback["status"] == "success" and callback["job_id"] == accepted.job_id
    assert callback["model"] == MODEL and callback["dimensions"] == DIMENSIONS
    assert [e["chunk_id"] for e in callback["embeddings"]] == [c.chunk_id for c in request.chunks]
    assert np.allclose(callback_vectors(callback), expected_vectors(SENTENCES[:3]), atol=1e-6)
    assert standin.statuses == [429, 200]
    assert waited >= 0.9


async def test_a_rejected_job_fails_alone_and_its_batch_mate_succeeds(
    openai_settings: EmbeddingSettings,
    provider: OpenAIProvider,
    standin: OpenAIStandin,
    queue: JobQueue,
    redis: aioredis.Redis,
) -> None:
    bad_texts = [SENTENCES[0], f"{SENTENCES[1]} {REJECT_MARKER}"]
    good_texts = SENTENCES[2:5]
    bad = await queue.enqueue(seed_request(texts=bad_texts, task_id="bad", model=MODEL))
    good = await queue.enqueue(seed_request(texts=good_texts, task_id="good", model=MODEL))

    async with running_worker(openai_settings, ProviderRegistry({MODEL: provider}, MODEL)):
        callbacks = {c["task_id"]: c for c in await pop_callbacks(redis, 2)}
        assert await redis.brpop([CALLBACK_QUEUE], timeout=1) is None

    assert callbacks["bad"]["status"] == "error" and callbacks["bad"]["job_id"] == bad.job_id
    assert callbacks["bad"]["error_code"] == "PROVIDER_REJECTED"
    assert callbacks["good"]["status"] == "success" and callbacks["good"]["job_id"] == good.job_id
    assert np.allclose(callback_vectors(callbacks["good"]), expected_vectors(good_texts), atol=1e-6)
    # Both jobs went up together first; the refusal was then pinned on one of them.
    first = standin.requests[0]
    assert first.status == 400 and sorted(first.inputs) == sorted(bad_texts + good_texts)
    assert sorted(r.status for r in standin.requests[1:]) == [200, 400]


async def test_a_job_fails_as_unavailable_when_the_upstream_keeps_failing(
    openai_settings: EmbeddingSettings,
    provider: OpenAIProvider,
    standin: OpenAIStandin,
    queue: JobQueue,
    redis: aioredis.Redis,
) -> None:
    standin.fail_next(500, times=10)
    accepted = await queue.enqueue(seed_request(model=MODEL))

    async with running_worker(openai_settings, ProviderRegistry({MODEL: provider}, MODEL)):
        (callback,) = await pop_callbacks(redis, 1)

    assert callback["status"] == "error" and callback["job_id"] == accepted.job_id
    assert callback["error_code"] == "PROVIDER_UNAVAILABLE"
    assert "500" in callback["error_message"]
    # One attempt plus provider_max_retries retries, then the job is given up on.
    assert standin.statuses == [500] * (1 + openai_settings.worker.provider_max_retries)
    assert await redis.xlen(EmbeddingKeys().jobs) == 0
