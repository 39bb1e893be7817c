"""How the gateway answers errors: failed gRPC calls mapped by class (embedpipe/http/
upstream.py), in Google's JSON error format, except on the OpenAI-compatible routes
(`/v1/...`), which answer in OpenAI's error shape so its SDKs understand them."""

from __future__ import annotations

from typing import Any

import grpc
from aiohttp import web
from aiohttp.typedefs import Middleware

from embedpipe.http.errors import HttpError, error_middleware, json_error, status_name
from embedpipe.http.upstream import http_error

_OPENAI_TYPE = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def _openai_body(error: HttpError) -> dict[str, Any]:
    status = error.status
    kind = _OPENAI_TYPE.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": error.violations[0].field if error.violations else None,
            "code": status_name(status).lower(),
        }
    }


def render(request: web.Request, error: HttpError) -> web.Response:
    """The JSON response for `error`, in the shape the route's clients expect."""
    if not request.path.startswith("/v1/"):
        return json_error(request, error)
    headers = {} if error.retry_after_s is None else {"Retry-After": str(error.retry_after_s)}
    return web.json_response(_openai_body(error), status=error.status, headers=headers)


def gateway_errors(unavailable_retry_after_s: int) -> Middleware:
    """The error middleware: upstream failures by class, both body shapes."""

    def translate(exc: Exception) -> HttpError | None:
        if isinstance(exc, grpc.aio.AioRpcError):
            return http_error(exc, unavailable_retry_after_s=unavailable_retry_after_s)
        return None

    return error_middleware(translate, render)
