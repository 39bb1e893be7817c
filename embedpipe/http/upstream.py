"""A failed gRPC call to the embedding server, as our HTTP error: one mapping, by class.

Statuses map as in grpc-gateway and Envoy: the client's mistakes stay the client's
(INVALID_ARGUMENT 400 with its field violations, PERMISSION_DENIED 403, ...), a rate limit is
429 with `Retry-After`, an upstream that is down 503 with `Retry-After`, a spent deadline 504.
RESOURCE_EXHAUSTED without `retry-after` is gRPC's own message size limit, not a rate limit
(the embedding server always says when to retry a rate limit): 413. Anything else is 500,
logged, without internals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from embedpipe.http.errors import HttpError
from embedpipe.retry import parse_retry_after
from embedpipe.violations import FieldViolation

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


def retry_after_of(error: grpc.aio.AioRpcError) -> int | None:
    """The `retry-after` trailing metadata, in whole seconds rounded up."""
    for key, value in error.trailing_metadata() or ():
        if key == "retry-after" and isinstance(value, str):
            seconds = parse_retry_after(value)
            return None if seconds is None else max(1, math.ceil(seconds))
    return None


def violations_of(error: grpc.aio.AioRpcError) -> list[FieldViolation]:
    """The field violations of the status's google.rpc.BadRequest details."""
    status = rpc_status.from_call(error)
    if status is None:
        return []
    found: list[FieldViolation] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return found


def http_error(
    error: grpc.aio.AioRpcError,
    *,
    unavailable_retry_after_s: int = 1,
    fields: Mapping[str, str] | None = None,
) -> HttpError:
    """The HTTP face of a failed call. `fields` renames the upstream's field paths to the
    caller's own (the ingestion API's `query` is the embedding server's `inputs[0]`)."""
    code = error.code()
    message = error.details() or code.name
    retry_after = retry_after_of(error)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is None:
        return HttpError(413, f"request too large for the embedding server: {message}")
    status = HTTP_STATUS.get(code, 500)
    if status == 500:
        log.error("upstream error code=%s details=%s", code.name, message)
        return HttpError(500, "internal error")
    if status == 503 and retry_after is None:
        retry_after = unavailable_retry_after_s
    violations = violations_of(error)
    if fields:
        renamed = [FieldViolation(fields.get(v.field, v.field), v.description) for v in violations]
        for old, new in fields.items():
            message = message.replace(f"{old}:", f"{new}:")
        violations = renamed
    return HttpError(status, message, violations=violations, retry_after_s=retry_after)
