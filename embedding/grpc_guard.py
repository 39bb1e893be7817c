"""Who may call: API key → tenant, the tenant's own data only, and its rate limit.

The gateway forwards the caller's key as gRPC metadata (`authorization: Bearer <key>` or
`x-api-key`), so the same rules hold for HTTP clients and for direct gRPC clients. Health
and reflection stay open; every EmbeddingService method is guarded.
"""

from __future__ import annotations

from typing import Any

import grpc

from embedding.errors import EmbeddingError, ErrorCode
from embedding.grpc_errors import Handler, UnaryWrapInterceptor
from embedding.rate_limit import RateLimiter
from embedpipe.auth import SERVICE_TENANT, KeyStore, key_from_headers

ANONYMOUS = "anonymous"


class GuardInterceptor(UnaryWrapInterceptor):
    """Authenticates, checks the request's tenant_id against the key's, rate-limits."""

    def __init__(self, service_name: str, keys: KeyStore, limiter: RateLimiter | None) -> None:
        super().__init__()
        self.prefix = f"/{service_name}/"
        self.keys = keys
        self.limiter = limiter

    def tenant_of(self, metadata: dict[str, str], request: Any) -> str:
        """The caller's tenant; raises UNAUTHENTICATED or PERMISSION_DENIED."""
        claimed: str = getattr(request, "tenant_id", "")
        if not self.keys.enabled:
            return claimed or ANONYMOUS
        key = key_from_headers(metadata)
        if key is None:
            raise EmbeddingError(
                ErrorCode.UNAUTHENTICATED,
                "an API key is required (Authorization: Bearer <key>, or X-API-Key)",
            )
        tenant = self.keys.tenant_for(key)
        if tenant is None:
            raise EmbeddingError(ErrorCode.UNAUTHENTICATED, "the API key is not valid")
        if tenant == SERVICE_TENANT:
            return claimed or SERVICE_TENANT
        if claimed and claimed != tenant:
            raise EmbeddingError(
                ErrorCode.PERMISSION_DENIED,
                "tenant_id: the API key does not belong to this tenant",
            )
        return tenant

    def wrap(self, behavior: Handler, method: str) -> Handler | None:
        if not method.startswith(self.prefix):
            return None  # health and reflection stay open

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            metadata = {
                k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
            }
            tenant = self.tenant_of(metadata, request)
            if self.limiter is not None:
                await self.limiter.take(tenant)
            return await behavior(request, context)

        return guarded
