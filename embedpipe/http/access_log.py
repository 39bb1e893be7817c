"""The HTTP services' access log, without API keys in it."""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from embedpipe.auth import AUTHORIZATION, X_API_KEY

#: `api_key=` in a request line, its underscore percent-encoded or not.
_QUERY_KEY = re.compile(r"([?&]api(?:_|%5f)key=)[^&\s]*", re.IGNORECASE)
_KEY_HEADERS = frozenset({AUTHORIZATION, X_API_KEY})
REDACTED = "<redacted>"


class KeyRedactingAccessLogger(AccessLogger):
    """aiohttp's access log without API keys: an `api_key=` in the request line or a
    Referer, and the key headers if a log format names them (`%{Authorization}i`), are
    logged as REDACTED.

    The apps set it as their access logger (`handler_args`), so wherever they are served
    with an access log (aiohttp's runner logs one by default), no key reaches it.
    """

    def _format_line(
        self, request: BaseRequest, response: StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        return [
            (key, _redacted(key, value))
            for key, value in super()._format_line(request, response, time)
        ]


def _redacted(key: str | tuple[str, str], value: str) -> str:
    if not isinstance(value, str):  # `%b` is an int, whatever aiohttp's annotation says
        return value
    if isinstance(key, tuple) and key[0] == "request_header" and key[1].lower() in _KEY_HEADERS:
        return value if value == "-" else REDACTED  # "-": no such header
    # The request line, and any header holding a URL (a Referer).
    return _QUERY_KEY.sub(rf"\g<1>{REDACTED}", value)
