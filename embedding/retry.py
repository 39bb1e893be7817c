"""Retrying transient provider failures, on the one retry policy of embedpipe/retry.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from embedding.errors import EmbeddingError
from embedpipe.retry import RetryPolicy, retrying

T = TypeVar("T")


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, EmbeddingError) and exc.transient


async def call_with_retries(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy, *, what: str
) -> T:
    """Run `call`; retry it while it raises a transient `EmbeddingError`, waiting as the
    policy says (or as the provider's Retry-After asks).

    A permanent error is raised as it is. When the attempts run out, the last error is
    raised with its code (PROVIDER_RATE_LIMITED, PROVIDER_UNAVAILABLE, PROVIDER_TIMEOUT,
    ...: what a job's error callback carries) and a message saying how many attempts
    were made.
    """
    attempts = 0
    try:
        async for attempt in retrying(policy, retry_if=_transient, what=what):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                return await call()
    except EmbeddingError as exc:
        if not exc.transient:
            raise
        raise EmbeddingError(
            exc.code,
            f"gave up after {attempts} attempt{'s' if attempts > 1 else ''}: {exc.message}",
            violations=exc.violations,
            retry_after_s=exc.retry_after_s,
        ) from exc
    raise AssertionError("unreachable: tenacity either returns or raises")
