"""The JSON error body our HTTP APIs share: Google's format (a google.rpc.Status with the
HTTP status as `code`), with bad fields listed in a google.rpc.BadRequest detail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Violation:
    """One bad field of a request and what is wrong with it."""

    field: str
    description: str


def status_name(http_status: int) -> str:
    return STATUS_NAME.get(http_status, "INTERNAL")


def error_body(
    http_status: int, message: str, violations: Sequence[Violation] = ()
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
