"""Bad input: schemathesis against the live OpenAPI documents of the gateway and the
ingestion API. Requests that fit the documents and requests that break them (negative
generation) are all answered, and never with a 5xx.

Only `not_a_server_error` is checked; whether every answer conforms to the document is a
separate concern. The examples are bounded and derandomized, so a run is repeatable and fits
CI. Our servers run in-process on the test's event loop, so the (synchronous) schemathesis
calls run in a thread.

The bugs the fuzzing found (now fixed) each keep a test at the end with the smallest
requests that showed them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err

from embedpipe.auth import X_API_KEY
from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.upstream import TIMEOUT_HEADER
from tests.support.services import serving_app
from tests.support.tenants import bearer

#: Examples per operation and generation mode (positive, negative).
MAX_EXAMPLES = 50
#: Seconds a single request may take before the run fails.
REQUEST_TIMEOUT_S = 10.0
COLLECTIONS = "/api/v1/collections"

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# The upload's `file` part may be any of its formats; the binary ones go out as raw bytes.
schemathesis.serializer.alias(["application/pdf", DOCX], "application/octet-stream")


@dataclass
class Findings:
    """What a run sent, and every answer that was a server error."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    #: Operations with nothing to break (no parameters, no body): no negative examples.
    no_negative: list[str] = field(default_factory=list)
    #: 504s of requests whose own X-Request-Timeout ran out (see caller_budget_ran_out).
    budget_timeouts: int = 0

    def report(self, name: str) -> str:
        by_status = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"{name}: {self.requests} requests ({by_status}); "
            f"{self.budget_timeouts} 504s of a spent caller budget"
        )


class ServerLog(logging.Handler):
    """The tracebacks our servers log for unhandled errors, to go with their 500s."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)

    def exceptions(self) -> list[BaseException]:
        return [r.exc_info[1] for r in self.records if r.exc_info and r.exc_info[1]]

    def tracebacks(self) -> str:
        return "\n".join(
            f"{r.name}: {r.getMessage()}\n" + "".join(traceback.format_exception(*r.exc_info))
            for r in self.records
            if r.exc_info
        )


@contextmanager
def server_log() -> Iterator[ServerLog]:
    handler = ServerLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def caller_budget_ran_out(response: Response) -> bool:
    """A 504 because the request's own time budget ran out: not a server error.

    The gateway's X-Request-Timeout lowers the time budget of a call (gateway/upstream.py), and
    positive examples of `{"type": "number", "exclusiveMinimum": 0}` include budgets like
    5e-324 s that nothing can meet; the documented answer is 504 DEADLINE_EXCEEDED. It is
    allowed only if the request did take at least the budget it asked for, so a 504 within the
    budget still fails the test.
    """
    if response.status_code != 504:
        return False
    asked = response.request.headers.get(TIMEOUT_HEADER)
    try:
        budget = float(asked) if asked is not None else math.inf
    except ValueError:
        return False
    return response.elapsed >= budget


def fuzz(
    spec: dict[str, Any],
    base_url: str,
    headers: Mapping[str, str],
    findings: Findings,
    *,
    fixed_path: Mapping[str, str] | None = None,
) -> None:
    """Every operation of `spec` (but the WebSocket), positive and negative examples, sent
    to `base_url`; 5xx answers are collected in `findings`, not raised.

    With `fixed_path`, only the operations whose path has one of its parameters are run, with
    those parameters set, so that the requests reach past the 404 of an unknown id.
    """
    schema = schemathesis.openapi.from_dict(spec).exclude(path="/api/v1/ws")
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    # Deletions last, a collection's after its documents', so the ids stay found meanwhile.
    operations.sort(key=lambda op: (op.method.upper() == "DELETE", -len(op.path)))
    with requests.Session() as session, server_log() as log:
        target = Target(base_url, session, headers, log, findings)
        for operation in operations:
            path_parameters = {
                name: value
                for name, value in (fixed_path or {}).items()
                if f"{{{name}}}" in operation.path
            }
            if fixed_path is not None and not path_parameters:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(mode, path_parameters=path_parameters or None)
                try:
                    target.run(strategy, operation.label, mode)
                except Unsatisfiable:
                    # Nothing of the operation can be broken (no parameters, no body).
                    assert mode is GenerationMode.NEGATIVE, operation.label
                    findings.no_negative.append(operation.label)


@dataclass
class Target:
    """Where and how the examples of one run are sent, and what came back."""

    base_url: str
    session: requests.Session
    headers: Mapping[str, str]
    log: ServerLog
    findings: Findings

    def run(self, strategy: SearchStrategy[Case[Any]], operation: str, mode: str) -> None:
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def send(case: Case[Any]) -> None:
            self.send(case, operation, mode)

        send()

    def send(self, case: Case[Any], operation: str, mode: str) -> None:
        findings = self.findings
        sent = dict(self.headers)
        self.log.records.clear()
        response = case.call(
            base_url=self.base_url, session=self.session, headers=sent, timeout=REQUEST_TIMEOUT_S
        )
        findings.requests += 1
        findings.statuses[response.status_code] += 1
        if response.status_code < 500:
            return
        if caller_budget_ran_out(response):
            findings.budget_timeouts += 1
            return
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=sent)
        except FailureGroup as exc:
            findings.server_errors.append(
                f"{operation} ({mode}):\n{exc}\nresponse body: {response.text[:2000]}\n"
                f"server log:\n{self.log.tracebacks()}"
            )


async def fetch_spec(http: aiohttp.ClientSession, base_url: str) -> dict[str, Any]:
    async with http.get(base_url + "/openapi.json") as r:
        assert r.status == 200, await r.text()
        spec: dict[str, Any] = await r.json()
        return spec


async def run_fuzz(
    name: str,
    spec: dict[str, Any],
    base_url: str,
    figure: Callable[[str], None],
    *,
    fixed_path: Mapping[str, str] | None = None,
) -> Findings:
    findings = Findings()
    started = time.monotonic()
    headers = bearer("tenant-a")
    await asyncio.to_thread(fuzz, spec, base_url, headers, findings)
    if fixed_path is not None:
        await asyncio.to_thread(fuzz, spec, base_url, headers, findings, fixed_path=fixed_path)
    figure(f"{findings.report(name)} in {time.monotonic() - started:.1f} s")
    return findings


async def test_the_gateway_answers_no_5xx(
    gateway: str, http: aiohttp.ClientSession, figure: Callable[[str], None]
) -> None:
    spec = await fetch_spec(http, gateway)
    findings = await run_fuzz("gateway", spec, gateway, figure)
    assert findings.requests > 0
    assert not findings.server_errors, "\n\n".join(findings.server_errors)


async def test_the_ingestion_api_answers_no_5xx(
    ingestion_api: str, http: aiohttp.ClientSession, figure: Callable[[str], None]
) -> None:
    spec = await fetch_spec(http, ingestion_api)
    # A collection, a document and its task of tenant-a, so that requests naming them reach
    # past the 404 of an unknown id.
    await create(http, ingestion_api, "fuzzed")
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/fuzzed/documents",
        json={"text": "A short document to fuzz around.", "document_id": "doc-1"},
        headers=bearer("tenant-a"),
    ) as r:
        assert r.status == 202, await r.text()
        task_id = (await r.json())["task_id"]
    fixed = {"collection_id": "fuzzed", "document_id": "doc-1", "task_id": task_id}
    findings = await run_fuzz("ingestion API", spec, ingestion_api, figure, fixed_path=fixed)
    assert findings.requests > 0
    assert not findings.server_errors, "\n\n".join(findings.server_errors)


# --- the known bugs, smallest requests -------------------------------------------------------


async def create(http: aiohttp.ClientSession, url: str, collection_id: str) -> None:
    async with http.post(
        url + COLLECTIONS, json={"collection_id": collection_id}, headers=bearer("tenant-a")
    ) as r:
        assert r.status == 201, await r.text()


@pytest.fixture
async def short_shutdown_gateway(gateway_settings: GatewaySettings) -> AsyncIterator[str]:
    """The gateway, stopping after 1 s even with a request hung (conftest's waits 60 s)."""
    async with serving_app(create_app(gateway_settings), shutdown_timeout=1.0) as url:
        yield url


async def test_a_key_that_is_not_grpc_metadata_is_refused_not_hung(
    short_shutdown_gateway: str, http: aiohttp.ClientSession
) -> None:
    # A tab is legal inside an HTTP header value, but not in gRPC metadata.
    headers = {**bearer("tenant-a"), X_API_KEY: "QX\t#rGH"}
    async with (
        asyncio.timeout(3),
        http.get(short_shutdown_gateway + "/v1/models", headers=headers) as r,
    ):
        assert r.status < 500, await r.text()


async def test_a_multipart_part_with_a_control_character_is_a_400(
    ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    await create(http, ingestion_api, "c")
    body = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="a\x01"\r\n\r\n'
        b"x\r\n"
        b"--b\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n"
        b"Some text.\r\n"
        b"--b--\r\n"
    )
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/c/documents",
        data=body,
        headers={**bearer("tenant-a"), "Content-Type": "multipart/form-data; boundary=b"},
    ) as r:
        assert r.status == 400, await r.text()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("", '{"collection_id": "c2", "metadata": {"k": "\\u0000"}}'),
        ("", '{"collection_id": "c2", "metadata": {"k": "\\ud800"}}'),
        ("/c/documents", '{"text": "Some text.", "metadata": {"k": "\\ud800"}}'),
        ("/c/search", '{"query": "text", "filter": {"k": "\\u0000"}}'),
        ("/c/search", '{"query": "text", "filter": {"k": "\\ud800"}}'),
    ],
    ids=[
        "collection-nul",
        "collection-surrogate",
        "document-surrogate",
        "filter-nul",
        "filter-surrogate",
    ],
)
async def test_unstorable_json_is_a_400(
    ingestion_api: str, http: aiohttp.ClientSession, path: str, body: str
) -> None:
    await create(http, ingestion_api, "c")
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}{path}",
        data=body,
        headers={**bearer("tenant-a"), "Content-Type": "application/json"},
    ) as r:
        assert r.status == 400, await r.text()


async def test_a_search_query_with_a_lone_surrogate_is_a_400(
    ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    await create(http, ingestion_api, "c")
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/c/search",
        data='{"query": "\\ud800"}',
        headers={**bearer("tenant-a"), "Content-Type": "application/json"},
    ) as r:
        assert r.status == 400, await r.text()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", COLLECTIONS + "/a%00"),
        ("DELETE", COLLECTIONS + "/a%00"),
        ("GET", COLLECTIONS + "/a%00/documents"),
        ("GET", COLLECTIONS + "/c/documents/a%00"),
        ("DELETE", COLLECTIONS + "/c/documents/a%00"),
        ("GET", "/api/v1/tasks/a%00"),
    ],
)
async def test_an_id_with_nul_in_the_path_is_a_4xx(
    ingestion_api: str, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    await create(http, ingestion_api, "c")
    async with http.request(method, ingestion_api + path, headers=bearer("tenant-a")) as r:
        assert 400 <= r.status < 500, await r.text()
