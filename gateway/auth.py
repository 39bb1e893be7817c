"""The gateway's own key check: a request without a valid key is refused before its body
is read, so an anonymous client can make the gateway neither buffer nor parse anything.

The gateway knows the keys when `EMBEDPIPE_API_KEYS` / `EMBEDPIPE_API_KEYS_FILE` are set for
it too (as `make up` and the README's set-up do). The embedding server stays the authority:
it checks the key again and decides which tenant a key may act for; without keys of its own,
the gateway leaves the whole decision to it.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from embedpipe.auth import key_from_headers
from gateway.errors import GatewayError
from gateway.upstream import SETTINGS

#: Routes that need no key, on purpose: probes, metrics and the API description.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 for a missing or unknown key, when the gateway has keys configured."""
    keys = request.app[SETTINGS].keys
    if keys.enabled and request.path not in PUBLIC_PATHS:
        headers = {name.lower(): value for name, value in request.headers.items()}
        if keys.tenant_for(key_from_headers(headers)) is None:
            raise GatewayError(
                401, "a valid API key is required (Authorization: Bearer <key>, or X-API-Key)"
            )
    return await handler(request)
