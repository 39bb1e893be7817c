"""The rate-limit middleware of our aiohttp apps: each tenant's calls through its token
bucket (embedpipe/rate_limit.py), the same bucket a gRPC front of the same service uses, so
a tenant cannot double its rate by using both. Over the limit: 429 with `Retry-After`."""

from __future__ import annotations

import math
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from embedpipe.http.auth import TENANT
from embedpipe.http.errors import HttpError
from embedpipe.rate_limit import OverLimitError, RateLimiter
from embedpipe.redis_conn import RETRYABLE_ERRORS


def rate_limit_middleware(
    limiter_of: Callable[[web.Application], RateLimiter | None],
) -> Middleware:
    """Limits the calls that have a tenant (placed after the API-key middleware, which finds
    it); `limiter_of(app)` is the app's limiter, None for no limit."""

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        tenant = request.get(TENANT)
        limiter = limiter_of(request.app) if tenant is not None else None
        if limiter is not None and tenant is not None:
            try:
                await limiter.take(tenant)
            except OverLimitError as exc:
                wait_s = max(1, math.ceil(exc.retry_after_s))
                raise HttpError(429, exc.message, retry_after_s=wait_s) from None
            except RETRYABLE_ERRORS as exc:
                raise HttpError(503, f"redis unavailable: {exc}", retry_after_s=1) from exc
        return await handler(request)

    return limit
