"""Redis connections with reconnect-and-retry, the same for every service."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Errors after which a command is retried on a fresh connection.
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


#: How long a reply may take beyond a command's own blocking time before the connection
#: is given up and the command retried on a fresh one.
REPLY_TIMEOUT_S = 10.0


def connect(url: str, *, retries: int = 5, longest_block_s: float | None = None) -> aioredis.Redis:
    """A client for `url` that retries dropped connections with jittered backoff.

    A worker gives `longest_block_s`, the longest BLOCK of its blocking reads: then no
    command waits for its reply for ever; past that plus REPLY_TIMEOUT_S the connection is
    dropped and the command retried, like one whose connection broke (every command a
    worker repeats is safe to repeat: our scripts are idempotent, and a moved callback is
    found in the processing list). Without it, reads wait as long as they must (pub/sub).

    Responses stay bytes: payloads on our streams are protobuf bytes, and callers decode
    text fields themselves.
    """
    return aioredis.Redis.from_url(
        url,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries),
        retry_on_error=list(RETRYABLE_ERRORS),
        health_check_interval=30,
        socket_connect_timeout=5,
        socket_timeout=None if longest_block_s is None else longest_block_s + REPLY_TIMEOUT_S,
    )


def as_text(value: bytes | str) -> str:
    """A reply field (bytes, as our clients leave them) as text."""
    return value.decode() if isinstance(value, bytes) else value
