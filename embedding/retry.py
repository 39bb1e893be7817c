"""Retrying transient provider failures with capped exponential backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from embedding.errors import EmbeddingError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_retries` retries; waits grow from `base_s` to `max_s`, with jitter."""

    max_retries: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """How long to wait before retry number `attempt` (1-based).

        A server's Retry-After wins over our own schedule (capped at `max_s`).
        """
        if retry_after_s is not None:
            return min(retry_after_s, self.max_s)
        backoff: float = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)


async def call_with_retries(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy, *, what: str
) -> T:
    """Run `call`; retry it while it raises a transient `EmbeddingError`.

    A permanent error is raised as it is. When the retries run out, the last error is
    raised with its code (PROVIDER_RATE_LIMITED, PROVIDER_UNAVAILABLE, PROVIDER_TIMEOUT,
    ...: what a job's error callback carries) and a message saying how many attempts
    were made.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except EmbeddingError as exc:
            attempt += 1
            if not exc.transient:
                raise
            if attempt > policy.max_retries:
                raise EmbeddingError(
                    exc.code,
                    f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}: {exc.message}",
                    violations=exc.violations,
                    retry_after_s=exc.retry_after_s,
                ) from exc
            delay = policy.delay_s(attempt, exc.retry_after_s)
            log.warning(
                "retrying what=%s attempt=%d/%d delay_s=%.2f code=%s error=%s",
                what,
                attempt,
                policy.max_retries,
                delay,
                exc.code,
                exc.message,
            )
            await asyncio.sleep(delay)
