"""Redis connections with reconnect-and-retry, the same for every service."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

#: Errors after which a command is retried on a fresh connection.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


def connect(url: str, *, retries: int = 5) -> aioredis.Redis:
    """A client for `url` that retries dropped connections with jittered backoff.

    Responses stay bytes: payloads on our streams are protobuf bytes, and callers decode
    text fields themselves.
    """
    return aioredis.Redis.from_url(
        url,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries),
        retry_on_error=list(RETRYABLE_ERRORS),
        health_check_interval=30,
        socket_connect_timeout=5,
    )
