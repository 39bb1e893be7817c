"""Every HTTP route, the WebSocket and every gRPC method checks the caller's key and tenant.

The routes come from the apps' routers and the methods from the proto descriptors: a route
or method that is neither public on purpose (`*_PUBLIC`) nor probed here (`*_PROBES`) fails
`test_every_*_is_public_or_probed`, so a new one cannot be added without deciding its auth.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import pkgutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from embedding.keys import EmbeddingKeys
from embedding.server import EmbeddingServer
from embedpipe.auth import KeyStore, hash_key
from embedpipe.embedding import v1 as stubs
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import queue_service_pb2 as queue_pb
from gateway.app import create_app as create_gateway_app
from gateway.openapi import document as gateway_document
from gateway.settings import GatewaySettings
from ingestion import console
from ingestion.api import create_app as create_ingestion_app
from ingestion.openapi import document as ingestion_document
from ingestion.settings import IngestionSettings
from tests.support.jobs import seed_request
from tests.support.services import serving_gateway
from tests.support.tenants import TENANT_KEYS, bearer

A, B, SERVICE = "tenant-a", "tenant-b", "*"

Route = tuple[str, str]  # (method, canonical path)


class Tenancy(Enum):
    """How a route meets another tenant's data."""

    PATH = "the path names the tenant's resources: another tenant gets 403/404"
    BODY = "the body names the tenant: another tenant's key gets 403"
    OWN = "acts on the caller's own tenant only: another tenant sees none of its data"
    NONE = "no tenant data at all (models, synchronous embeddings)"


@dataclass(frozen=True)
class Probe:
    """A request a route's rightful caller gets a success for; path parameters are filled in
    from the canonical path with the values of `ingestion_data`."""

    tenancy: Tenancy
    json: Any = None


GATEWAY_PUBLIC: frozenset[Route] = frozenset(
    {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json")}
)
INGESTION_PUBLIC: frozenset[Route] = frozenset(
    {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json")}
    | {("GET", path) for path in console.PATHS}
)
GENERATE = "/api/v1/embeddings/generate"
GENERATE_BODY: dict[str, Any] = {
    "document_id": "doc-1",
    "collection_id": "col-1",
    "tenant_id": A,
    "task_id": "task-1",
    "callback_queue": "ingestion:callbacks:embedding",
    "chunks": [{"chunk_id": "doc-1:0", "text": "A sentence to embed."}],
}
GATEWAY_PROBES: dict[Route, Probe] = {
    ("POST", GENERATE): Probe(Tenancy.BODY, GENERATE_BODY),
    ("POST", "/v1/embeddings"): Probe(
        Tenancy.NONE, {"model": "all-MiniLM-L6-v2", "input": "A sentence."}
    ),
    ("GET", "/v1/models"): Probe(Tenancy.NONE),
}
COLLECTION = "/api/v1/collections/{collection_id}"
DOCUMENT = COLLECTION + "/documents/{document_id}"
INGESTION_PROBES: dict[Route, Probe] = {
    ("POST", "/api/v1/collections"): Probe(Tenancy.OWN, {"collection_id": "b-own"}),
    ("GET", "/api/v1/collections"): Probe(Tenancy.OWN),
    ("GET", COLLECTION): Probe(Tenancy.PATH),
    ("DELETE", COLLECTION): Probe(Tenancy.PATH),
    ("POST", COLLECTION + "/documents"): Probe(
        Tenancy.PATH, {"text": "Tenant b writes here.", "document_id": "a-doc"}
    ),
    ("GET", COLLECTION + "/documents"): Probe(Tenancy.PATH),
    ("GET", DOCUMENT): Probe(Tenancy.PATH),
    ("DELETE", DOCUMENT): Probe(Tenancy.PATH),
    ("POST", COLLECTION + "/search"): Probe(Tenancy.PATH, {"query": "aardvarks humming"}),
    ("POST", COLLECTION + "/reembed"): Probe(Tenancy.PATH, {"model": "text-embedding-3-small"}),
    ("GET", "/api/v1/tasks/{task_id}"): Probe(Tenancy.PATH),
    ("POST", "/api/v1/tasks/{task_id}/cancel"): Probe(Tenancy.PATH),
    # The WebSocket: plain GETs here; tenancy in test_websocket_*.
    ("GET", "/api/v1/ws"): Probe(Tenancy.OWN),
}

#: Keys that are no key of ours, each as a bearer token and as X-API-Key.
WRONG_KEYS = [
    "not-a-key",
    TENANT_KEYS[A].upper(),
    TENANT_KEYS[A] + "-",
    hash_key(TENANT_KEYS[A]),  # the stored hash is not a key
]
WRONG_KEY_HEADERS: list[dict[str, str]] = [
    *({"Authorization": f"Bearer {key}"} for key in WRONG_KEYS),
    *({"X-API-Key": key} for key in WRONG_KEYS),
    {"Authorization": f"Basic {TENANT_KEYS[A]}"},  # not a bearer token
    {"Authorization": TENANT_KEYS[A]},  # no scheme
    {"Authorization": "Bearer not-a-key", "X-API-Key": TENANT_KEYS[A]},  # the first one counts
]


# Enumeration ---------------------------------------------------------------------------------


def app_routes(app: web.Application) -> set[Route]:
    """(method, canonical path) of every route, aiohttp's HEAD-for-GET included."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }


def gateway_routes() -> set[Route]:
    return app_routes(create_gateway_app(GatewaySettings()))


def ingestion_routes() -> set[Route]:
    return app_routes(create_ingestion_app(IngestionSettings(database_url="postgresql://unused")))


def as_get(route: Route) -> Route:
    """HEAD routes are answered by their GET's handler, so they share its decision."""
    method, path = route
    return ("GET", path) if method == "HEAD" else route


def public_in_spec(spec: dict[str, Any]) -> set[Route]:
    """The operations the OpenAPI document says need no key (`security: []`)."""
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == []
    }


@pytest.mark.parametrize(
    ("routes", "public", "probes", "spec"),
    [
        (gateway_routes, GATEWAY_PUBLIC, GATEWAY_PROBES, gateway_document),
        (ingestion_routes, INGESTION_PUBLIC, INGESTION_PROBES, ingestion_document),
    ],
    ids=["gateway", "ingestion"],
)
def test_every_route_is_public_or_probed(
    routes: Callable[[], set[Route]],
    public: frozenset[Route],
    probes: dict[Route, Probe],
    spec: Callable[[], dict[str, Any]],
) -> None:
    served = routes()
    assert len(served) >= len(public) + len(probes)  # the enumeration works
    decided = public | set(probes)
    undecided = {route for route in served if as_get(route) not in decided}
    assert not undecided, f"routes neither public nor probed by an auth test: {undecided}"
    stale = decided - {as_get(route) for route in served}
    assert not stale, f"allow-list or probes name routes the app does not serve: {stale}"
    assert not set(probes) & public
    # What is public on purpose is what the OpenAPI document says needs no key.
    assert public_in_spec(spec()) == set(public)


# Helpers -------------------------------------------------------------------------------------


@dataclass
class Call:
    """One HTTP request and what came back."""

    method: str
    url: str
    headers: dict[str, str]
    json: Any = None
    status: int = 0
    body: str = ""

    def describe(self) -> str:
        return f"{self.method} {self.url} headers={sorted(self.headers)} -> {self.status}"


async def send(http: aiohttp.ClientSession, call: Call) -> Call:
    async with http.request(call.method, call.url, headers=call.headers, json=call.json) as r:
        call.status = r.status
        call.body = await r.text()
    return call


def concrete(path: str, values: dict[str, str]) -> str:
    """The canonical path with its parameters filled in (a new parameter is a KeyError)."""
    return path.format(**values)


@dataclass
class Failures:
    """Collects every broken expectation, so one run reports all routes at once."""

    found: list[str] = field(default_factory=list)

    def expect(self, ok: bool, call: Call, wanted: str) -> None:
        if not ok:
            self.found.append(f"{call.describe()}: wanted {wanted}; body {call.body[:200]!r}")

    def check(self) -> None:
        assert not self.found, "\n".join(self.found)


def leaked(call: Call, secrets: list[str]) -> list[str]:
    """The secrets of tenant A in a reply, except those the caller sent itself."""
    sent = call.url + json.dumps(call.json)
    return [s for s in secrets if s in call.body and s not in sent]


async def unauthenticated_calls(
    http: aiohttp.ClientSession,
    base: str,
    probes: dict[Route, Probe],
    values: dict[str, str],
    extra_headers: list[dict[str, str]],
) -> AsyncIterator[Call]:
    """No key and every wrong key on every probed route (HEAD too, for GETs)."""
    for (method, path), probe in probes.items():
        url = base + concrete(path, values)
        for headers in [{}, *WRONG_KEY_HEADERS, *extra_headers]:
            yield await send(http, Call(method, url, dict(headers), probe.json))
            if method == "GET":
                yield await send(http, Call("HEAD", url, dict(headers)))


# The gateway ---------------------------------------------------------------------------------

KEYS = KeyStore({hash_key(key): tenant for tenant, key in TENANT_KEYS.items()})


@pytest.fixture(params=["keys upstream", "keys at the gateway too"])
async def any_gateway(
    request: pytest.FixtureRequest, gateway_settings: GatewaySettings
) -> AsyncIterator[str]:
    """The gateway leaving keys to the embedding server, or checking them itself as well."""
    settings = gateway_settings
    if request.param == "keys at the gateway too":
        settings = replace(gateway_settings, keys=KEYS)
    async with serving_gateway(settings) as url:
        yield url


@pytest.fixture
async def keyed_gateway(gateway_settings: GatewaySettings) -> AsyncIterator[str]:
    async with serving_gateway(replace(gateway_settings, keys=KEYS)) as url:
        yield url


async def test_gateway_routes_refuse_missing_and_wrong_keys(
    any_gateway: str, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    failures = Failures()
    async for call in unauthenticated_calls(http, any_gateway, GATEWAY_PROBES, {}, []):
        failures.expect(call.status == 401, call, "401")
        failures.expect(TENANT_KEYS[A] not in call.body, call, "no key echoed")
    failures.check()
    assert await redis.xlen(EmbeddingKeys().jobs) == 0  # nothing was accepted
    # The probes are requests the rightful caller gets a success for, so the 401s above
    # come from the keys, not from the bodies.
    for (method, path), probe in GATEWAY_PROBES.items():
        call = await send(http, Call(method, any_gateway + path, bearer(A), probe.json))
        failures.expect(200 <= call.status < 300, call, "2xx for tenant-a's key")
    failures.check()


async def test_gateway_routes_refuse_another_tenants_request(
    any_gateway: str, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    failures = Failures()
    for (method, path), probe in GATEWAY_PROBES.items():
        call = await send(http, Call(method, any_gateway + path, bearer(B), probe.json))
        if probe.tenancy is Tenancy.BODY:
            failures.expect(call.status == 403, call, "403 for tenant-b's key")
        else:
            assert probe.tenancy is Tenancy.NONE
            failures.expect(call.status == 200, call, "200: nothing of a tenant's here")
    failures.check()
    assert await redis.xlen(EmbeddingKeys().jobs) == 0


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b""),
        ("application/json", b"{not json"),
        ("application/json", b"{}"),
        ("text/plain", b"hello"),
        ("application/json", b"[" * 100_000),
        ("application/json", b" " * (3 * 1024 * 1024)),  # over the 2 MiB body limit
    ],
    ids=["empty", "broken", "empty object", "text", "deep nesting", "over the body limit"],
)
async def test_a_gateway_with_keys_refuses_before_reading_the_body(
    keyed_gateway: str, http: aiohttp.ClientSession, content_type: str, body: bytes
) -> None:
    failures = Failures()
    for (method, path), _probe in GATEWAY_PROBES.items():
        for key_headers in [{}, {"Authorization": "Bearer not-a-key"}]:
            headers = {**key_headers, "Content-Type": content_type}
            async with http.request(
                method, keyed_gateway + path, data=io.BytesIO(body), headers=headers
            ) as r:
                call = Call(method, keyed_gateway + path, headers, status=r.status)
                call.body = await r.text()
            failures.expect(call.status == 401, call, "401 whatever the body")
            if path.startswith("/v1/"):  # OpenAI's shape, so its SDKs raise the right error
                error = json.loads(call.body)["error"]
                failures.expect(error["type"] == "authentication_error", call, "OpenAI's 401")
    failures.check()


async def test_public_routes_answer_without_a_key(
    keyed_gateway: str, ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    failures = Failures()
    for base, public in ((keyed_gateway, GATEWAY_PUBLIC), (ingestion_api, INGESTION_PUBLIC)):
        for method, path in public:
            for verb in (method, "HEAD"):
                call = await send(http, Call(verb, base + path, {}))
                failures.expect(call.status == 200, call, "200 without a key")
    failures.check()


# The ingestion API ---------------------------------------------------------------------------

#: What tenant A stores that no one else may ever be shown.
A_SECRETS = [
    "a-secret-collection-meta",
    "a-secret-doc-meta",
    "a-secret-file.md",
    "Aardvarks hum secretly",
    A,
]


@dataclass(frozen=True)
class IngestionData:
    """Tenant A's collection, document and task, and what must never leak of them."""

    values: dict[str, str]
    secrets: list[str]


@pytest.fixture
async def ingestion_data(ingestion_api: str, http: aiohttp.ClientSession) -> IngestionData:
    collections = ingestion_api + "/api/v1/collections"
    body = {"collection_id": "a-col", "metadata": {"owner": "a-secret-collection-meta"}}
    async with http.post(collections, json=body, headers=bearer(A)) as r:
        assert r.status == 201, await r.text()
    document = {
        "text": "Aardvarks hum secretly at night in the archive.",
        "document_id": "a-doc",
        "filename": "a-secret-file.md",
        "metadata": {"note": "a-secret-doc-meta"},
    }
    async with http.post(f"{collections}/a-col/documents", json=document, headers=bearer(A)) as r:
        assert r.status == 202, await r.text()
        task_id: str = (await r.json())["task_id"]
    values = {"collection_id": "a-col", "document_id": "a-doc", "task_id": task_id}
    return IngestionData(values, [*A_SECRETS, task_id])


async def assert_tenant_a_intact(
    http: aiohttp.ClientSession, url: str, data: IngestionData
) -> None:
    """Tenant A's collection, document and task are all still there, unchanged."""
    values = data.values
    async with http.get(url + concrete(COLLECTION, values), headers=bearer(A)) as r:
        assert r.status == 200
        assert (await r.json())["metadata"] == {"owner": "a-secret-collection-meta"}
    async with http.get(url + concrete(DOCUMENT, values), headers=bearer(A)) as r:
        assert r.status == 200
        assert "a-secret-doc-meta" in await r.text()
    async with http.get(f"{url}/api/v1/tasks/{values['task_id']}", headers=bearer(A)) as r:
        assert r.status == 200
    async with http.get(url + concrete(COLLECTION + "/documents", values), headers=bearer(A)) as r:
        assert [d["document_id"] for d in (await r.json())["documents"]] == ["a-doc"]


async def test_ingestion_routes_refuse_missing_wrong_and_service_keys(
    ingestion_api: str, ingestion_data: IngestionData, http: aiohttp.ClientSession
) -> None:
    # A service key acts for every tenant towards the embedding server, but it names no
    # tenant, so it opens nothing here; nor does a key in the query (WebSockets only).
    service = [bearer(SERVICE), {"X-API-Key": TENANT_KEYS[SERVICE]}]
    failures = Failures()
    calls = unauthenticated_calls(
        http, ingestion_api, INGESTION_PROBES, ingestion_data.values, service
    )
    async for call in calls:
        failures.expect(call.status == 401, call, "401")
        failures.expect(not leaked(call, ingestion_data.secrets), call, "none of A's data")
    for (method, path), probe in INGESTION_PROBES.items():
        if path == "/api/v1/ws":
            continue  # there the query key is allowed (browsers cannot set headers)
        url = ingestion_api + concrete(path, ingestion_data.values)
        call = await send(http, Call(method, f"{url}?api_key={TENANT_KEYS[A]}", {}, probe.json))
        failures.expect(call.status == 401, call, "401: query keys are for WebSockets only")
    failures.check()
    await assert_tenant_a_intact(http, ingestion_api, ingestion_data)


async def test_ingestion_routes_show_another_tenant_nothing_of_tenant_a(
    ingestion_api: str, ingestion_data: IngestionData, http: aiohttp.ClientSession
) -> None:
    failures = Failures()
    # Routes naming A's resources first: tenant-b must not have any of its own yet.
    ordered = sorted(INGESTION_PROBES.items(), key=lambda item: item[1].tenancy != Tenancy.PATH)
    for (method, path), probe in ordered:
        url = ingestion_api + concrete(path, ingestion_data.values)
        call = await send(http, Call(method, url, bearer(B), probe.json))
        if probe.tenancy is Tenancy.PATH:
            failures.expect(call.status in (403, 404), call, "403 or 404")
        elif path == "/api/v1/ws":
            failures.expect(call.status == 400, call, "400: not a WebSocket handshake")
        else:
            failures.expect(200 <= call.status < 300, call, "2xx in tenant-b's own space")
        failures.expect(not leaked(call, ingestion_data.secrets), call, "none of A's data")
    failures.check()
    async with http.get(ingestion_api + "/api/v1/collections", headers=bearer(B)) as r:
        assert [c["collection_id"] for c in (await r.json())["collections"]] == ["b-own"]
    await assert_tenant_a_intact(http, ingestion_api, ingestion_data)


# The WebSocket -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"Authorization": "Bearer not-a-key"}, ""),
        ({}, "?api_key=not-a-key"),
        ({}, f"?api_key={hash_key(TENANT_KEYS[A])}"),
        (bearer(SERVICE), ""),
        ({}, f"?api_key={TENANT_KEYS[SERVICE]}"),
        ({"Authorization": "Bearer not-a-key"}, f"?api_key={TENANT_KEYS[A]}"),
    ],
    ids=[
        "no key",
        "wrong header key",
        "wrong query key",
        "hash as query key",
        "service key",
        "service query key",
        "wrong header beats query",
    ],
)
async def test_websocket_handshake_without_a_tenants_key_is_refused(
    ingestion_api: str, http: aiohttp.ClientSession, headers: dict[str, str], query: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{ingestion_api}/api/v1/ws{query}", headers=headers)
    assert refused.value.status == 401


@pytest.mark.parametrize("key_in", ["header", "query"])
async def test_websocket_of_another_tenant_hears_nothing_of_tenant_a(
    ingestion_api: str, ingestion_data: IngestionData, http: aiohttp.ClientSession, key_in: str
) -> None:
    url = f"{ingestion_api}/api/v1/ws"
    if key_in == "header":
        connecting = http.ws_connect(url, headers=bearer(B))
    else:
        connecting = http.ws_connect(f"{url}?api_key={TENANT_KEYS[B]}")
    task_id = ingestion_data.values["task_id"]
    async with connecting as ws:
        await ws.send_json({"action": "subscribe", "task_id": task_id})
        refused = await ws.receive_json(timeout=10)
        assert refused["type"] == "error" and refused["status"] == 404, refused
        await ws.send_json({"action": "subscribe", "all": True})
        assert await ws.receive_json(timeout=10) == {"type": "subscribed", "all": True}
        # Tenant A's new upload publishes its events before tenant B's does: any of A's
        # that leaked would arrive first.
        documents = f"{ingestion_api}/api/v1/collections/a-col/documents"
        text = {"text": "Aardvarks hum secretly, again.", "document_id": "a-doc-2"}
        async with http.post(documents, json=text, headers=bearer(A)) as r:
            assert r.status == 202
        async with http.post(
            ingestion_api + "/api/v1/collections", json={"collection_id": "b"}, headers=bearer(B)
        ) as r:
            assert r.status == 201
        async with http.post(
            f"{ingestion_api}/api/v1/collections/b/documents",
            json={"text": "Tenant b's text."},
            headers=bearer(B),
        ) as r:
            own_task = (await r.json())["task_id"]
        event = await ws.receive_json(timeout=10)
        assert event["task_id"] == own_task, event
        raw = json.dumps(event)
        assert not [s for s in ingestion_data.secrets if s in raw]


# gRPC ----------------------------------------------------------------------------------------

SERVICE_NAME = "EmbeddingService"
#: A request of each method that tenant A's key gets an OK for.
GRPC_PROBES: dict[str, Callable[[], Message]] = {
    "GenerateEmbeddings": lambda: seed_request(tenant_id=A),
    "Embed": lambda: pb.EmbedRequest(inputs=["A sentence."]),
    "ListModels": pb.ListModelsRequest,
}
#: Methods open without a key on purpose, like gRPC health: they tell how much work is
#: waiting, nothing of any tenant.
GRPC_PUBLIC: dict[str, Callable[[], Message]] = {
    "embedpipe.embedding.v1.QueueService.GetQueueStats": queue_pb.GetQueueStatsRequest,
}


def grpc_methods() -> list[MethodDescriptor]:
    return list(pb.DESCRIPTOR.services_by_name[SERVICE_NAME].methods)


def every_grpc_method() -> list[MethodDescriptor]:
    """The methods of every service of every generated stub module."""
    found = []
    for module_info in pkgutil.iter_modules(stubs.__path__):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(f"{stubs.__name__}.{module_info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                found += service.methods
    return found


def carries_tenant(method: MethodDescriptor) -> bool:
    return "tenant_id" in method.input_type.fields_by_name


def test_every_grpc_method_is_public_or_probed() -> None:
    names = {method.full_name for method in every_grpc_method()}
    guarded = {method.full_name for method in grpc_methods()}
    assert len(guarded) >= 3  # the enumeration works
    assert names == guarded | set(GRPC_PUBLIC), f"undecided: {names - guarded - set(GRPC_PUBLIC)}"
    assert {m.name for m in grpc_methods()} == set(GRPC_PROBES)
    for method in grpc_methods():
        assert GRPC_PROBES[method.name]().DESCRIPTOR is method.input_type


async def test_public_grpc_methods_answer_without_a_key(
    guarded_channel: grpc.aio.Channel,
) -> None:
    for method in every_grpc_method():
        if method.full_name in GRPC_PUBLIC:
            request = GRPC_PUBLIC[method.full_name]()
            assert await call_method(guarded_channel, method, request, ()) == grpc.StatusCode.OK


@pytest.fixture
async def guarded_channel(auth_server: EmbeddingServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        yield channel


async def call_method(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    request: Message,
    metadata: tuple[tuple[str, str], ...],
) -> grpc.StatusCode:
    """Calls `method` as its descriptor describes it; the status code it ends with."""
    callable_ = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=bytes,
    )
    try:
        await callable_(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def grpc_key(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


GRPC_WRONG_METADATA: list[tuple[tuple[str, str], ...]] = [
    *(grpc_key(key) for key in WRONG_KEYS),
    *((("x-api-key", key),) for key in WRONG_KEYS),
    (("authorization", TENANT_KEYS[A]),),  # no scheme
    (("authorization", "Bearer not-a-key"), ("x-api-key", TENANT_KEYS[A])),
]


def method_ids() -> Iterator[str]:
    return (method.name for method in grpc_methods())


@pytest.mark.parametrize("method", grpc_methods(), ids=list(method_ids()))
async def test_grpc_method_needs_a_valid_key(
    guarded_channel: grpc.aio.Channel, method: MethodDescriptor, redis: aioredis.Redis
) -> None:
    request = GRPC_PROBES[method.name]()
    assert await call_method(guarded_channel, method, request, ()) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    codes = await asyncio.gather(
        *(call_method(guarded_channel, method, request, md) for md in GRPC_WRONG_METADATA)
    )
    assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}
    assert await redis.xlen(EmbeddingKeys().jobs) == 0
    # The request itself is fine: the refusals were the keys'.
    assert await call_method(guarded_channel, method, request, grpc_key(TENANT_KEYS[A])) == (
        grpc.StatusCode.OK
    )


@pytest.mark.parametrize("method", grpc_methods(), ids=list(method_ids()))
async def test_grpc_method_refuses_another_tenants_key(
    guarded_channel: grpc.aio.Channel, method: MethodDescriptor, redis: aioredis.Redis
) -> None:
    request = GRPC_PROBES[method.name]()
    code = await call_method(guarded_channel, method, request, grpc_key(TENANT_KEYS[B]))
    if carries_tenant(method):
        assert {f.name: value for f, value in request.ListFields()}["tenant_id"] == A
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert await redis.xlen(EmbeddingKeys().jobs) == 0
    else:
        assert code == grpc.StatusCode.OK  # no tenant's data in it
