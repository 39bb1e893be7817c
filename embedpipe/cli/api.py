"""The `embedpipe` CLI's client of the ingestion API.

Where the API is and which key to use (flags, then the environment, then the dev key that
`make up` keeps), and one JSON call that turns every failure into a `CliError` with a
one-line message: the stack not running, a refused key, something not found. An API that
says "not now" (503 while the models load or a dependency is down, 429) is waited for as
it asks, with a line on stderr each time, for up to a minute.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from embedpipe.data_dir import data_dir
from embedpipe.retry import RetryPolicy, retry_after_s, retrying

DEFAULT_URL = "http://127.0.0.1:8090"
API_PREFIX = "/api/v1"
#: Items asked for per page of a list (the API's largest page).
LIST_PAGE_SIZE = 1000
DEV_KEY_FILE = "dev-api-key"
#: Answers that mean "retry later": nothing was done, the same call may succeed.
BUSY_STATUSES = frozenset({429, 503})
#: Waiting out a busy API: its Retry-After, else backoff up to 5 s; at most a minute.
BUSY_RETRY = RetryPolicy(max_attempts=None, base_s=0.5, max_s=5.0, give_up_after_s=60.0)
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
KEY_HINT = (
    "pass one with --api-key KEY or EMBEDPIPE_API_KEY (embedpipe up keeps its dev key in "
    "dev-api-key in its data folder, ~/.local/share/embedpipe unless EMBEDPIPE_DATA_DIR)"
)


class CliError(Exception):
    """A failure reported as one line on stderr, with the process's exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ApiError(CliError):
    """The API answered with an error status: `code` and `detail` are its own words,
    `message` the line for the user."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        message: str,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
        #: The wait the API asked for (its Retry-After), if any.
        self.retry_after_s = retry_after_s


def default_url(env: Mapping[str, str]) -> str:
    """`EMBEDPIPE_URL`, else the local stack's ingestion API."""
    return env.get("EMBEDPIPE_URL") or DEFAULT_URL


def default_api_key(env: Mapping[str, str]) -> str | None:
    """`EMBEDPIPE_API_KEY`, else the dev key `embedpipe up` keeps in its data folder."""
    if key := env.get("EMBEDPIPE_API_KEY", "").strip():
        return key
    path = data_dir(env) / DEV_KEY_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _error_parts(body: object) -> tuple[str, str, str]:
    """(code, message, field) of the APIs' `{"error": {"status", "message", "details"}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", "", ""
    field = ""
    for detail in error.get("details") or []:
        for violation in detail.get("fieldViolations", []) if isinstance(detail, dict) else []:
            field = field or str(violation.get("field") or "")
    return str(error.get("status") or ""), str(error.get("message") or ""), field


def _api_error(
    status: int,
    body: object,
    api_key: str | None,
    url: str,
    retry_after: float | None = None,
) -> ApiError:
    """The error to raise for an error answer from `url`; 401 and 404 get messages of their
    own (a 404 names what was not found, or says the URL is not the ingestion API)."""
    code, detail, field = _error_parts(body)
    if status == 401:
        if api_key:
            message = f"the API refused the API key (401); {KEY_HINT}"
        else:
            message = f"no API key given and the API requires one (401); {KEY_HINT}"
    elif status == 404:
        named = detail.endswith(" not found") and "'" in detail  # "collection 'x' not found"
        message = detail if named else f"{url} not found (404); is it the embedpipe ingestion API?"
    else:
        where = f"{field}: " if field else ""
        message = f"the API answered {status} {code}: {where}{detail or 'no details'}"
    return ApiError(status, code or str(status), detail, message, retry_after)


def _is_busy(exc: BaseException) -> bool:
    """Whether the API asked to be called again later."""
    return isinstance(exc, ApiError) and exc.status in BUSY_STATUSES


def _tell_waiting(exc: BaseException, delay_s: float) -> None:
    print(f"embedpipe: {exc} (trying again in {delay_s:.1f} s)", file=sys.stderr, flush=True)


class ApiClient:
    """JSON calls to one ingestion API with one key; every failure is a `CliError`."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        session: aiohttp.ClientSession,
        busy_retry: RetryPolicy = BUSY_RETRY,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.session = session
        self.busy_retry = busy_retry

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def unreachable(self) -> CliError:
        return CliError(
            f"cannot reach the embedpipe API at {self.url} — is the stack up? (make up)"
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
    ) -> Any:
        """`method` on `/api/v1{path}` with a JSON body, or a multipart one that `form`
        builds (once per try); the decoded JSON body (None for 204). A busy API is called
        again as `busy_retry` says."""
        async for attempt in retrying(
            self.busy_retry, retry_if=_is_busy, what=f"{method} {path}", notify=_tell_waiting
        ):
            with attempt:
                data = form() if form is not None else None
                return await self._call_once(method, path, json=json, params=params, data=data)
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _call_once(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(
                method, f"{self.url}{API_PREFIX}{path}", headers=self.headers, **kwargs
            ) as response:
                return await self._decode(response)
        except aiohttp.SocketTimeoutError as exc:
            raise CliError(f"the API at {self.url} did not answer in time") from exc
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise self.unreachable() from exc
        except aiohttp.InvalidURL as exc:
            raise CliError(f"not a valid API URL: {self.url!r}") from exc

    async def list_all(self, path: str, field: str) -> list[Any]:
        """Every item of a paged list (`field` of each page), following next_page_token."""
        items: list[Any] = []
        token = ""
        while True:
            params = {"page_size": str(LIST_PAGE_SIZE), "page_token": token}
            page = await self.call("GET", path, params=params)
            items += page.get(field) or []
            token = page.get("next_page_token") or ""
            if not token:
                return items

    async def _decode(self, response: aiohttp.ClientResponse) -> Any:
        if response.status == 204:
            return None
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = None
        if response.status >= 400:
            raise _api_error(
                response.status,
                body,
                self.api_key,
                str(response.url),
                retry_after_s(response.headers),
            )
        if body is None:
            raise CliError(
                f"{self.url} answered {response.status} without JSON; "
                "is it the embedpipe ingestion API?"
            )
        return body

    async def events(self) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket on `/api/v1/ws` for task events."""
        try:
            return await self.session.ws_connect(
                f"{self.url}{API_PREFIX}/ws", headers=self.headers, heartbeat=30
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise _api_error(401, None, self.api_key, self.url) from exc
            raise CliError(f"the API refused the event socket ({exc.status})") from exc
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise self.unreachable() from exc


@asynccontextmanager
async def open_client(url: str, api_key: str | None) -> AsyncIterator[ApiClient]:
    """An `ApiClient` on its own session, closed on exit."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield ApiClient(url, api_key, session)
