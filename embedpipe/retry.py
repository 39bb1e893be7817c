"""One retry policy for every client of ours: capped exponential backoff with jitter, and
the server's `Retry-After` when it gives one.

The loop itself is tenacity's (`retrying` configures it); what is ours is the schedule, the
reading of `Retry-After` (delay-seconds or an HTTP-date, and OpenAI's `retry-after-ms`),
and a log line per retry. An exception tells how long the server asked us to wait by a
`retry_after_s` attribute.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    stop_never,
)
from tenacity.stop import stop_base

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_attempts` tries (None: until it works); waits grow from `base_s` to
    `max_s`, each a random 50-100% of its step so that clients spread out. With
    `give_up_after_s`, no wait reaches past that many seconds after the first try."""

    max_attempts: int | None = 6
    base_s: float = 0.5
    max_s: float = 30.0
    give_up_after_s: float | None = None

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """How long to wait after failed attempt number `attempt` (1-based). A server's
        Retry-After wins over our own schedule (capped at `max_s`)."""
        if retry_after_s is not None:
            return min(max(0.0, retry_after_s), self.max_s)
        step: float = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return step * random.uniform(0.5, 1.0)


class Headers(Protocol):
    def get(self, key: str, /) -> str | None: ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After value, delay-seconds or an HTTP-date; None if neither."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000" dates parse without a zone; they mean UTC
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0.0, moment.timestamp() - time.time())


def retry_after_s(headers: Headers) -> float | None:
    """The wait a response asks for: `retry-after-ms` (OpenAI's), else `retry-after`."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _requested_wait(state: RetryCallState) -> float | None:
    exception = state.outcome.exception() if state.outcome is not None else None
    wait = getattr(exception, "retry_after_s", None)
    return float(wait) if isinstance(wait, int | float) else None


def retrying(
    policy: RetryPolicy,
    *,
    retry_if: Callable[[BaseException], bool],
    what: str,
    notify: Callable[[BaseException, float], None] | None = None,
) -> AsyncRetrying:
    """Tenacity's loop with `policy`, retrying while `retry_if(exception)`; the last
    exception is raised as it is when the attempts run out. Each retry is logged, or told
    to `notify(exception, seconds until the next try)` instead (a CLI's line for its user).

        async for attempt in retrying(policy, retry_if=..., what="..."):
            with attempt:
                return await call()
    """

    def wait(state: RetryCallState) -> float:
        return policy.delay_s(state.attempt_number, _requested_wait(state))

    def before_sleep(state: RetryCallState) -> None:
        exception = state.outcome.exception() if state.outcome is not None else None
        if notify is not None and exception is not None:
            notify(exception, state.upcoming_sleep)
            return
        log.warning(
            "retrying what=%s attempt=%d/%s delay_s=%.2f error=%s",
            what,
            state.attempt_number,
            policy.max_attempts or "-",
            state.upcoming_sleep,
            exception,
        )

    stop: stop_base = (
        stop_never if policy.max_attempts is None else stop_after_attempt(policy.max_attempts)
    )
    if policy.give_up_after_s is not None:
        stop = stop | stop_before_delay(policy.give_up_after_s)
    return AsyncRetrying(
        retry=retry_if_exception(retry_if),
        stop=stop,
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )
