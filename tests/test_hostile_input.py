"""Hostile JSON bodies on every JSON route of both apps: always a 4xx whose message names the
problem, never a 5xx. The routes come from the apps' routers, so a new JSON route without
a probe here fails `test_every_json_route_is_probed`."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app as create_gateway_app
from gateway.settings import GatewaySettings
from ingestion.api import create_app as create_ingestion_app
from ingestion.routes import ROUTES as INGESTION_ROUTES
from ingestion.settings import IngestionSettings
from tests.support.ingestion_calls import COLLECTIONS, create_collection
from tests.support.tenants import bearer

JSON = {"Content-Type": "application/json"}
TEN_MB = 10 * 1024 * 1024
#: Methods whose requests carry a body.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Route:
    app: str  # "gateway" | "ingestion"
    path: str  # as requested, path parameters filled in
    #: A string field of the route's request, for the 10 MB string, and how the answer
    #: names it: the field (400) or the body (413, over the app's size limit).
    big_field: str
    big_named: str
    #: What else the request needs for the big field to be looked at.
    rest: bytes = b""


ROUTES = {
    ("gateway", "/api/v1/embeddings/generate"): Route(
        "gateway", "/api/v1/embeddings/generate", "task_id", "body"
    ),
    ("gateway", "/v1/embeddings"): Route("gateway", "/v1/embeddings", "input", "body"),
    ("ingestion", "/api/v1/collections"): Route(
        "ingestion", COLLECTIONS, "collection_id", "collection_id"
    ),
    ("ingestion", "/api/v1/collections/{collection_id}/documents"): Route(
        "ingestion",
        f"{COLLECTIONS}/hostile/documents",
        "document_id",
        "document_id",
        rest=b', "text": "A short document."',
    ),
    ("ingestion", "/api/v1/collections/{collection_id}/search"): Route(
        "ingestion", f"{COLLECTIONS}/hostile/search", "query", "query"
    ),
    ("ingestion", "/api/v1/collections/{collection_id}/reembed"): Route(
        "ingestion", f"{COLLECTIONS}/hostile/reembed", "model", "model"
    ),
}


#: Ingestion routes whose path holds their whole message: no body is read.
BODYLESS = {(r.method, r.path) for r in INGESTION_ROUTES if not r.has_body}


def body_routes(app: web.Application) -> set[str]:
    return {
        route.resource.canonical
        for route in app.router.routes()
        if route.method in BODY_METHODS
        and route.resource is not None
        and (route.method, route.resource.canonical) not in BODYLESS
    }


def test_every_json_route_is_probed() -> None:
    gateway = body_routes(create_gateway_app(GatewaySettings()))
    ingestion = body_routes(create_ingestion_app(IngestionSettings(database_url="postgresql://")))
    found = {("gateway", path) for path in gateway} | {("ingestion", path) for path in ingestion}
    assert len(found) >= 5  # the enumeration works
    assert found == set(ROUTES), f"routes without a probe: {found - set(ROUTES)}"


#: (name, body, a phrase the answer's message must hold)
HOSTILE: list[tuple[str, bytes, str]] = [
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "nested"),
    ("nesting past the limit", b'{"a": ' * 40 + b"1" + b"}" * 40, "nested deeper than 32"),
    ("huge integer", b'{"a": 1' + b"0" * 400 + b"}", "out of range"),
    ("5000-digit integer", b'{"a": ' + b"9" * 5000 + b"}", "out of range"),
    ("number past a double", b'{"a": 1e999}', "out of range"),
    ("past a double, as E+", b'{"a": [1, -2.5E+308]}', "out of range"),
    ("NaN", b'{"a": NaN}', "NaN"),
    ("Infinity", b'{"a": -Infinity}', "Infinity"),
    ("duplicate keys", b'{"a": 1, "a": 2}', "appears twice"),
    ("invalid UTF-8", b'{"a": "\xff\xfe"}', "UTF-8"),
    ("lone surrogate", b'{"a": "\\ud800"}', "surrogates"),
    ("not JSON", b'{"a": ', "not valid JSON"),
]


def cases() -> Iterator[Any]:
    for key, route in ROUTES.items():
        for name, body, phrase in HOSTILE:
            yield pytest.param(route, body, phrase, id=f"{key[0]} {key[1]}: {name}")


def error_of(app: str, body: dict[str, Any]) -> tuple[str, list[str]]:
    """The message and the named fields of either app's error body (the gateway's `/v1/`
    routes answer in OpenAI's shape, with one `param`)."""
    error = body["error"]
    if "param" in error:
        return error["message"], [error["param"]] if error["param"] else []
    fields = [v["field"] for d in error["details"] for v in d.get("fieldViolations", [])]
    return error["message"], fields


@pytest.fixture
async def bases(gateway: str, ingestion_api: str, http: aiohttp.ClientSession) -> dict[str, str]:
    await create_collection(http, ingestion_api, "hostile")
    return {"gateway": gateway, "ingestion": ingestion_api}


@pytest.mark.parametrize(("route", "body", "phrase"), list(cases()))
async def test_hostile_json_is_a_4xx_naming_the_problem(
    bases: dict[str, str], http: aiohttp.ClientSession, route: Route, body: bytes, phrase: str
) -> None:
    headers = {**bearer("tenant-a"), **JSON}
    async with http.post(bases[route.app] + route.path, data=body, headers=headers) as r:
        answer = await r.json()
        assert r.status == 400, answer
    message, fields = error_of(route.app, answer)
    assert phrase in message, message
    assert fields == ["body"]


@pytest.mark.parametrize("route", list(ROUTES.values()), ids=[" ".join(k) for k in ROUTES])
async def test_a_10_mb_string_is_a_4xx_naming_where(
    bases: dict[str, str], http: aiohttp.ClientSession, route: Route
) -> None:
    body = b'{"%s": "%s"%s}' % (route.big_field.encode(), b"x" * TEN_MB, route.rest)
    headers = {**bearer("tenant-a"), **JSON}
    async with http.post(
        bases[route.app] + route.path, data=io.BytesIO(body), headers=headers
    ) as r:
        answer = await r.json()
        assert 400 <= r.status < 500, answer
    message, fields = error_of(route.app, answer)
    assert route.big_named in fields or message.startswith(route.big_named), answer


async def test_a_query_longer_than_the_embedding_server_takes_is_400_naming_query(
    bases: dict[str, str], http: aiohttp.ClientSession
) -> None:
    # The test embedding server takes texts of at most 2,000 characters.
    body = {"query": "word " * 1000, "top_k": 3}
    url = bases["ingestion"] + f"{COLLECTIONS}/hostile/search"
    async with http.post(url, json=body, headers=bearer("tenant-a")) as r:
        answer = await r.json()
        assert r.status == 400, answer
    message, fields = error_of("ingestion", answer)
    assert fields == ["query"] and message.startswith("query:"), answer
    assert "2000" in message


async def test_ingestion_uploads_with_nul_or_broken_multipart_are_400(
    bases: dict[str, str], http: aiohttp.ClientSession
) -> None:
    url = bases["ingestion"] + f"{COLLECTIONS}/hostile/documents"
    body = {"text": "hello", "metadata": {"k": "a\u0000b"}}
    async with http.post(url, json=body, headers=bearer("tenant-a")) as r:
        assert r.status == 400
        assert error_of("ingestion", await r.json())[1] == ["metadata"]
    async with http.post(url, json={"text": "a\u0000b"}, headers=bearer("tenant-a")) as r:
        assert r.status == 400
    headers = {**bearer("tenant-a"), "Content-Type": "multipart/form-data"}  # no boundary
    async with http.post(url, data=b"--x\r\n", headers=headers) as r:
        assert r.status == 400, await r.text()
    form = aiohttp.FormData()
    form.add_field("file", b"some text", filename="a.txt", content_type="text/plain")
    form.add_field("metadata", '{"a": 1, "a": 2}')
    async with http.post(url, data=form, headers=bearer("tenant-a")) as r:
        answer = await r.json()
        assert r.status == 400, answer
    assert error_of("ingestion", answer) == (
        "the key 'a' appears twice in one object",
        ["metadata"],
    )


async def test_the_websocket_answers_hostile_json_with_an_error_message(
    bases: dict[str, str], http: aiohttp.ClientSession
) -> None:
    url = bases["ingestion"] + "/api/v1/ws"
    async with http.ws_connect(url, headers=bearer("tenant-a")) as ws:
        for text in ("[" * 100_000, '{"action": "subscribe", "action": "x"}', '{"a": NaN}'):
            await ws.send_str(text)
            answer = await ws.receive_json(timeout=10)
            assert answer["type"] == "error" and "must be JSON" in answer["message"], answer
        await ws.send_json({"action": "subscribe", "all": True})
        assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
