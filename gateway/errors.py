"""The gateway's one error type and the one place where errors become HTTP responses.

gRPC statuses map to HTTP as in grpc-gateway/Envoy (see `HTTP_STATUS`). Bodies follow
Google's JSON error format (a google.rpc.Status with an HTTP `code`), except on the
OpenAI-compatible routes (`/v1/...`), which answer in OpenAI's error shape so its SDKs
understand them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from embedpipe.http_errors import Violation, error_body, status_name

log = logging.getLogger(__name__)

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


_OPENAI_TYPE = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """A request the gateway answers with `http_status` and a message naming bad fields."""

    def __init__(
        self,
        http_status: int,
        message: str,
        *,
        violations: tuple[Violation, ...] = (),
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.violations = violations
        self.retry_after_s = retry_after_s

    @classmethod
    def bad_request(cls, violations: list[Violation]) -> GatewayError:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(400, message, violations=tuple(violations))


def from_grpc(error: grpc.aio.AioRpcError, *, unavailable_retry_after_s: int) -> GatewayError:
    """The HTTP face of a failed gRPC call, keeping the server's field violations."""
    code = error.code()
    message = error.details() or code.name
    retry_after = _retry_after(error)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is None:
        # Not a rate limit (those carry retry-after): gRPC's own message size limit.
        return GatewayError(413, f"request too large for the embedding server: {message}")
    status = HTTP_STATUS.get(code, 500)
    if status == 500:
        log.error("upstream error code=%s details=%s", code.name, message)
        message = "internal error"
    if status == 503 and retry_after is None:
        retry_after = unavailable_retry_after_s
    return GatewayError(status, message, violations=_violations(error), retry_after_s=retry_after)


def _retry_after(error: grpc.aio.AioRpcError) -> int | None:
    for key, value in error.trailing_metadata() or ():
        if key == "retry-after" and isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _violations(error: grpc.aio.AioRpcError) -> tuple[Violation, ...]:
    status = rpc_status.from_call(error)
    if status is None:
        return ()
    found: list[Violation] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [Violation(v.field, v.description) for v in bad.field_violations]
    return tuple(found)


def _openai_body(error: GatewayError) -> dict[str, Any]:
    status = error.http_status
    kind = _OPENAI_TYPE.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": error.violations[0].field if error.violations else None,
            "code": status_name(status).lower(),
        }
    }


def render(request: web.Request, error: GatewayError) -> web.Response:
    """The JSON response for `error`, in the shape the route's clients expect."""
    body = (
        _openai_body(error)
        if request.path.startswith("/v1/")
        else error_body(error.http_status, error.message, error.violations)
    )
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return web.json_response(body, status=error.http_status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_middleware(unavailable_retry_after_s: int) -> Any:
    """Maps every failure of a handler to a JSON error; nothing a client sends yields a 500."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as error:
            return render(request, error)
        except grpc.aio.AioRpcError as error:
            return render(
                request, from_grpc(error, unavailable_retry_after_s=unavailable_retry_after_s)
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return render(request, GatewayError(exc.status, exc.reason))
        except Exception:
            log.exception("unhandled error method=%s path=%s", request.method, request.path)
            return render(request, GatewayError(500, "internal error"))

    return middleware
