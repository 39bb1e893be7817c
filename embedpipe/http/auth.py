"""The API-key middleware of our aiohttp apps: the caller's tenant, or a 401.

A request without a valid key is refused before its body is read, so an anonymous client
can make an app neither buffer nor parse anything. The key comes as `Authorization: Bearer
<key>` or `X-API-Key: <key>`, and on the paths that allow it (a browser cannot set a
WebSocket's headers) as `?api_key=`.
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from embedpipe.auth import (
    API_KEY_QUERY,
    KEY_REQUIRED,
    SERVICE_KEY_REFUSED,
    SERVICE_TENANT,
    KeyStore,
    key_from_headers,
)
from embedpipe.http.errors import HttpError

#: The tenant the middleware found for a request; absent on public paths.
TENANT = web.RequestKey("tenant_id", str)


def tenant_of(request: web.Request) -> str:
    """The tenant the middleware found for this request."""
    return request[TENANT]


def api_key_middleware(
    keys: KeyStore,
    *,
    public_paths: Collection[str],
    query_key_paths: Collection[str] = (),
    service_keys: bool,
    tenant_without_keys: str | None = None,
) -> Middleware:
    """401 for a missing or unknown key on every path but `public_paths`.

    `service_keys`: whether a key of the tenant `*` (which may act for any tenant) is
    accepted; an app that serves one tenant's data per request refuses it. With no keys
    configured (development), every request is `tenant_without_keys`'s (if given).
    """

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public_paths:
            return await handler(request)
        if not keys.enabled:
            if tenant_without_keys is not None:
                request[TENANT] = tenant_without_keys
            return await handler(request)
        headers = {name.lower(): value for name, value in request.headers.items()}
        key = key_from_headers(headers)
        if key is None and request.path in query_key_paths:
            key = request.query.get(API_KEY_QUERY)
        tenant = keys.tenant_for(key)
        if tenant is None:
            raise HttpError(401, KEY_REQUIRED)
        if tenant == SERVICE_TENANT and not service_keys:
            raise HttpError(401, SERVICE_KEY_REFUSED)
        request[TENANT] = tenant
        return await handler(request)

    return authenticate
