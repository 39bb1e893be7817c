"""HTTP errors of our aiohttp apps: one exception, one JSON body, one middleware.

The body is Google's JSON error format (a google.rpc.Status with the HTTP status as `code`),
bad fields listed in a google.rpc.BadRequest detail:
`{"error": {"code", "status", "message", "details"}}`. Each app maps its own domain error
to an `HttpError` once (`translate`), and may render some routes in another shape
(`render`: the gateway's OpenAI-compatible routes); nothing a client sends yields a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from embedpipe.violations import FieldViolation

log = logging.getLogger(__name__)

STATUS_NAME = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE_ENTITY",
    429: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    502: "BAD_GATEWAY",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def status_name(http_status: int) -> str:
    return STATUS_NAME.get(http_status, "INTERNAL")


class HttpError(Exception):
    """An answer with `status`, a message for people and, for bad input, the bad fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        violations: Sequence[FieldViolation] = (),
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.violations = tuple(violations)
        #: Whole seconds for a `Retry-After` header.
        self.retry_after_s = retry_after_s

    @classmethod
    def bad_request(cls, violations: Sequence[FieldViolation]) -> HttpError:
        """400 naming every bad field."""
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(400, message, violations=violations)

    @classmethod
    def bad_field(cls, field: str, description: str) -> HttpError:
        """400 naming one bad field."""
        return cls.bad_request([FieldViolation(field, description)])


def error_body(
    http_status: int, message: str, violations: Sequence[FieldViolation] = ()
) -> dict[str, Any]:
    """`{"error": {"code", "status", "message", "details"}}`."""
    details: list[dict[str, Any]] = []
    if violations:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [
                    {"field": v.field, "description": v.description} for v in violations
                ],
            }
        )
    return {
        "error": {
            "code": http_status,
            "status": status_name(http_status),
            "message": message,
            "details": details,
        }
    }


def json_error(request: web.Request, error: HttpError) -> web.Response:
    """The error as Google's JSON error body, with `Retry-After` when there is a wait."""
    headers = {} if error.retry_after_s is None else {"Retry-After": str(error.retry_after_s)}
    return web.json_response(
        error_body(error.status, error.message, error.violations),
        status=error.status,
        headers=headers,
    )


def _from_http_exception(exc: web.HTTPException) -> HttpError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return HttpError(
            413, f"body: {exc.text}", violations=[FieldViolation("body", exc.text or "")]
        )
    return HttpError(exc.status, exc.reason)


Translate = Callable[[Exception], HttpError | None]
Render = Callable[[web.Request, HttpError], web.Response]


def error_middleware(
    translate: Translate = lambda exc: None, render: Render = json_error
) -> Middleware:
    """Every failure of a handler as a JSON error: `HttpError`s as they are, aiohttp's own
    (404, 405, 413) by their status, others as `translate` maps them (None: unexpected,
    logged with its traceback and answered 500 without internals)."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except HttpError as error:
            return render(request, error)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return render(request, _from_http_exception(exc))
        except Exception as exc:
            mapped = translate(exc)
            if mapped is None:
                log.exception("unhandled error method=%s path=%s", request.method, request.path)
                mapped = HttpError(500, "internal error")
            return render(request, mapped)

    return errors
