"""Lists a page at a time: `page_size` items by id, `page_token` saying where to go on.

A token is the last id of the page before, base64url-encoded: opaque to clients, and stable
while items are added or deleted (no item is skipped or shown twice).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ingestion.core.checks import check_between, invalid

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page:
    after: str
    size: int

    def next_token(self, rows: Sequence[dict[str, Any]], id_field: str) -> str:
        """The token of the next page, or "" when `rows` (fetched with `fetch_size`) end."""
        if len(rows) <= self.size:
            return ""
        return base64.urlsafe_b64encode(rows[self.size - 1][id_field].encode()).decode()

    @property
    def fetch_size(self) -> int:
        """Rows to ask for: one more than the page shows, to know whether more follow."""
        return self.size + 1


class PagedRequest(Protocol):
    """A List request: ListCollectionsRequest, ListDocumentsRequest."""

    page_size: int
    page_token: str

    def HasField(self, field_name: str) -> bool: ...  # noqa: N802 (protobuf's name)


def page_of(request: PagedRequest) -> Page:
    """The page a List request asks for; INVALID_ARGUMENT naming a bad size or token."""
    page_token = request.page_token
    size = request.page_size if request.HasField("page_size") else DEFAULT_PAGE_SIZE
    check_between(size, "page_size", 1, MAX_PAGE_SIZE)
    try:
        raw = base64.b64decode(page_token, altchars=b"-_", validate=True)
        after = raw.decode() if page_token else ""
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid("page_token", "is not a token this service gave") from None
    return Page(after, size)
