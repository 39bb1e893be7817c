"""Reading a request's JSON body: the content type, the size limit, strict JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from embedpipe.http.errors import HttpError
from embedpipe.strict_json import StrictJsonError, loads
from embedpipe.violations import FieldViolation

JSON_TYPE = "application/json"


async def read_json(request: web.Request) -> Any:
    """The body's JSON value: 415 for another content type, 413 past the app's size limit
    (aiohttp's `client_max_size`), 400 naming the problem for anything `strict_json`
    refuses (bad UTF-8 or JSON, NaN, huge numbers, duplicate keys, deep nesting, lone
    surrogates)."""
    if request.content_type != JSON_TYPE:
        raise HttpError(415, f"Content-Type must be {JSON_TYPE}, not {request.content_type!r}")
    raw = await request.read()
    try:
        return loads(raw)
    except StrictJsonError as exc:
        raise HttpError(
            400, f"body: {exc}", violations=[FieldViolation("body", str(exc))]
        ) from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """`read_json`, which must be a JSON object (400 naming `body` otherwise)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise HttpError.bad_field("body", f"must be a JSON object, not {_kind(body)}")
    return body


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
