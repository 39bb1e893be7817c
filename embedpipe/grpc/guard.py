"""Who may call a gRPC service of ours: API key → tenant, the tenant's own data only, and
its rate limit. The same rules as over HTTP: the gateway forwards the caller's key as gRPC
metadata (`authorization: Bearer <key>` or `x-api-key`).

A service says how a call meets its tenant:

- `TenantFrom.REQUEST` (the Embedding Service): the request names its tenant (`tenant_id`);
  a tenant's key must name its own, and a service key (tenant `*`) may name any.
- `TenantFrom.KEY` (the Ingestion Service): the key is the tenant; a service key, which has
  no tenant, is refused.

The tenant of a call is then `current_tenant()` for the method. Health and reflection stay
open; so do the methods a service lists as public.
"""

from __future__ import annotations

import contextvars
from collections.abc import Collection
from enum import Enum
from typing import Any

import grpc

from embedpipe.auth import (
    KEY_REQUIRED,
    SERVICE_KEY_REFUSED,
    SERVICE_TENANT,
    KeyStore,
    key_from_headers,
)
from embedpipe.grpc.errors import RpcError
from embedpipe.grpc.layers import Context, Layer
from embedpipe.rate_limit import OverLimitError, RateLimiter
from embedpipe.redis_conn import RETRYABLE_ERRORS

#: The tenant of calls when no API key is configured and the request names none.
ANONYMOUS = "anonymous"

_TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")


def current_tenant() -> str:
    """The tenant of the call being served."""
    return _TENANT.get()


class TenantFrom(Enum):
    REQUEST = "request"
    KEY = "key"


class GuardLayer(Layer):
    """Authenticates, finds the call's tenant, rate-limits it."""

    def __init__(
        self,
        service_name: str,
        keys: KeyStore,
        limiter: RateLimiter | None,
        *,
        tenant_from: TenantFrom,
        tenant_without_keys: str = ANONYMOUS,
        public: Collection[str] = (),
    ) -> None:
        self.prefix = f"/{service_name}/"
        self.keys = keys
        self.limiter = limiter
        self.tenant_from = tenant_from
        self.tenant_without_keys = tenant_without_keys
        self.public = frozenset(public)

    def applies_to(self, method: str) -> bool:
        return method.startswith(self.prefix) and method not in self.public

    def tenant_of(self, metadata: dict[str, str], request: Any) -> str:
        """The caller's tenant; raises UNAUTHENTICATED or PERMISSION_DENIED."""
        claimed: str = getattr(request, "tenant_id", "")
        if not self.keys.enabled:
            return claimed or self.tenant_without_keys
        tenant = self.keys.tenant_for(key_from_headers(metadata))
        if tenant is None:
            raise RpcError(grpc.StatusCode.UNAUTHENTICATED, KEY_REQUIRED)
        if tenant == SERVICE_TENANT:
            if self.tenant_from is TenantFrom.KEY:
                raise RpcError(grpc.StatusCode.UNAUTHENTICATED, SERVICE_KEY_REFUSED)
            return claimed or SERVICE_TENANT
        if claimed and claimed != tenant:
            raise RpcError(
                grpc.StatusCode.PERMISSION_DENIED,
                "tenant_id: the API key does not belong to this tenant",
            )
        return tenant

    async def before(self, method: str, request: Any, context: Context) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        tenant = self.tenant_of(metadata, request)
        if self.limiter is not None:
            try:
                await self.limiter.take(tenant)
            except OverLimitError as exc:
                raise RpcError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message, retry_after_s=exc.retry_after_s
                ) from None
            except RETRYABLE_ERRORS as exc:
                raise RpcError(grpc.StatusCode.UNAVAILABLE, f"redis unavailable: {exc}") from exc
        _TENANT.set(tenant)
