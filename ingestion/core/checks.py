"""The checks every operation shares, each naming the request field at fault."""

from __future__ import annotations

import json
import re
from typing import Any

from embedpipe.text_safety import text_problem
from ingestion.errors import IngestionError, IngestionErrorCode

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
#: Metadata of a collection or a document, as compact JSON: a document's is copied into
#: each of its chunks and every number in it is a row of the range index (migration 006).
MAX_METADATA_BYTES = 16 * 1024


def invalid(field: str, message: str) -> IngestionError:
    return IngestionError(IngestionErrorCode.INVALID_ARGUMENT, message, field=field)


def not_found(what: str) -> IngestionError:
    """Ids another tenant owns are reported exactly like ids that do not exist."""
    return IngestionError(IngestionErrorCode.NOT_FOUND, f"{what} not found")


def check_id(value: str, field: str) -> str:
    """An id usable in URLs and keys: 1-128 of letters, digits and `_ . : -`."""
    if not ID_PATTERN.fullmatch(value):
        raise invalid(field, "must be 1-128 characters: letters, digits, '_', '.', ':' or '-'")
    return value


def check_between(value: int, field: str, minimum: int, maximum: int) -> int:
    if not minimum <= value <= maximum:
        raise invalid(field, f"must be an integer from {minimum} to {maximum}")
    return value


def check_storable(value: object, field: str) -> None:
    """Refuse text PostgreSQL cannot store (NUL) or UTF-8 cannot carry (lone surrogates),
    anywhere in a JSON value, naming the field."""
    if problem := text_problem(value, nul_allowed=False):
        raise invalid(field, problem)


def check_metadata(metadata: dict[str, Any], field: str) -> None:
    """Metadata that can be stored, and at most MAX_METADATA_BYTES of JSON."""
    check_storable(metadata, field)
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise invalid(field, f"must be at most {MAX_METADATA_BYTES} bytes as JSON, not {size}")
