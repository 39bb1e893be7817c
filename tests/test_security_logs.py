"""API keys, right or wrong, never reach a log: not in clear, not URL-quoted, not as sha256.

Every logger is turned to DEBUG, requests with good and bad keys go through the gateway,
the ingestion API (WebSocket included), its worker and gRPC, and then every log record (and
what the processes wrote to their stdout and stderr) is searched for the keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import aiohttp
import grpc
import pytest

from embedding.server import EmbeddingServer
from embedding.settings import EmbeddingSettings
from embedpipe.auth import KeyStore, hash_key
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.redis_server import free_port
from gateway.app import create_app as create_gateway_app
from gateway.settings import GatewaySettings
from ingestion.api import create_app as create_ingestion_app
from ingestion.settings import IngestionSettings
from tests.support.gateway_calls import GENERATE, seed_payload
from tests.support.ingestion_calls import COLLECTIONS, create_collection, wait_task
from tests.support.jobs import seed_request
from tests.support.processes import service_env, start_child
from tests.support.services import serving_app, serving_gateway
from tests.support.tenants import TENANT_KEYS, bearer

A = "tenant-a"
#: Keys of no one, with characters a careless log line or header parser might trip on.
WRONG_KEYS = [
    "wrong-key-4f1c9e",
    "odd\"key' %s %(x)s {0} \\n;<script>=&?",
    "key with spaces",
    "tab\tkey",
    "k" * 3000,
]
#: Wrong keys gRPC metadata cannot carry (not printable ASCII), or a server cannot parse.
UNCARRIABLE_KEYS = ["ключ-ünïcödé-🔑", "K" * 10_000]  # the second is over aiohttp's 8 KiB
ALL_KEYS = [*TENANT_KEYS.values(), *WRONG_KEYS, *UNCARRIABLE_KEYS]


def forms_of(key: str) -> list[str]:
    """What of a key must never be logged: itself, URL-quoted, its hash."""
    return [key, quote(key, safe=""), quote(key), hash_key(key)]


SECRETS = sorted({form for key in ALL_KEYS for form in forms_of(key)})


def header_variants(key: str) -> list[dict[str, str]]:
    return [{"Authorization": f"Bearer {key}"}, {"X-API-Key": key}]


def found_in(text: str) -> list[str]:
    return [secret[:40] for secret in SECRETS if secret in text]


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The root logger and every logger that has a level of its own, at DEBUG."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        if logger.level != logging.NOTSET:
            logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for logger, level in levels:
        logger.setLevel(level)


def record_text(record: logging.LogRecord) -> str:
    """Everything of a record a handler could write: message, args, exception, extras."""
    parts = [record.getMessage(), repr(record.args), repr(record.msg)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    parts += [record.exc_text or "", record.stack_info or "", repr(vars(record))]
    return "\n".join(parts)


async def drive_http(http: aiohttp.ClientSession, url: str, body: object) -> None:
    """POSTs `body` to `url` with every key, as a bearer token and as X-API-Key."""
    for key in ALL_KEYS:
        for headers in header_variants(key):
            async with http.post(url, headers=headers, json=body) as r:
                await r.read()


async def drive_gateway(http: aiohttp.ClientSession, url: str) -> None:
    payload = seed_payload()
    await drive_http(http, url + GENERATE, payload)
    await drive_http(http, url + "/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": "x"})
    # Another tenant's payload (403), a bad body (400), and the model list.
    async with http.post(url + GENERATE, json=payload, headers=bearer("tenant-b")) as r:
        assert r.status == 403
    async with http.post(url + GENERATE, json={"bad": 1}, headers=bearer(A)) as r:
        assert r.status == 400
    for key in ALL_KEYS:
        async with http.get(url + "/v1/models", headers={"X-API-Key": key}) as r:
            await r.read()


async def drive_ingestion(http: aiohttp.ClientSession, url: str) -> str:
    """Good and bad keys on the ingestion API and its WebSocket; a task id of tenant A."""
    await create_collection(http, url, "logged")
    documents = f"{url}{COLLECTIONS}/logged/documents"
    async with http.post(documents, json={"text": "Keys stay secret."}, headers=bearer(A)) as r:
        assert r.status == 202
        task_id: str = (await r.json())["task_id"]
    await drive_http(http, f"{url}{COLLECTIONS}/logged/search", {"query": "secret keys"})
    for key in ALL_KEYS:
        for headers in header_variants(key):
            async with http.get(f"{url}/api/v1/tasks/{task_id}", headers=headers) as r:
                await r.read()
        for ws_url, headers in [
            (f"{url}/api/v1/ws?api_key={quote(key, safe='')}", {}),
            (f"{url}/api/v1/ws", {"Authorization": f"Bearer {key}"}),
        ]:
            try:
                async with http.ws_connect(ws_url, headers=headers) as ws:
                    await ws.send_json({"action": "subscribe", "task_id": task_id})
                    await ws.receive_json(timeout=10)
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status in (400, 401)  # 400: a 10 kB request line
    return task_id


async def ok_or_refused(call: Awaitable[object]) -> None:
    with contextlib.suppress(grpc.aio.AioRpcError):
        await call


async def drive_grpc(target: str) -> None:
    """Every key gRPC can carry, on every method."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        for i, key in enumerate(k for k in ALL_KEYS if k.isascii() and k.isprintable()):
            # (The 10 kB key is over gRPC's metadata limit: refused, and not logged either.)
            for metadata in ((("authorization", f"Bearer {key}"),), (("x-api-key", key),)):
                request = seed_request(task_id=f"logged-{i}")
                await ok_or_refused(stub.GenerateEmbeddings(request, metadata=metadata))
                await ok_or_refused(stub.Embed(pb.EmbedRequest(inputs=["x"]), metadata=metadata))
                await ok_or_refused(stub.ListModels(pb.ListModelsRequest(), metadata=metadata))


KEYS = KeyStore({hash_key(key): tenant for tenant, key in TENANT_KEYS.items()})
#: An access log format an operator might choose, showing every place a key could be.
REVEALING_FORMAT = '%a "%r" %s "%{Referer}i" "%{Authorization}i" "%{X-API-Key}i"'


async def drive_revealing_access_logs(
    http: aiohttp.ClientSession, gateway: GatewaySettings, ingestion: IngestionSettings
) -> None:
    """Both apps served with REVEALING_FORMAT; keys in headers, URLs and Referers."""
    async with (
        serving_app(create_gateway_app(gateway), access_log_format=REVEALING_FORMAT) as g,
        serving_app(create_ingestion_app(ingestion), access_log_format=REVEALING_FORMAT) as i,
    ):
        for key in ALL_KEYS:
            query = f"?api_key={quote(key, safe='')}"
            for headers in header_variants(key):
                headers["Referer"] = f"https://app.example/page{query}"
                for url in (f"{g}/v1/models{query}", f"{i}/api/v1/collections{query}"):
                    async with http.get(url, headers=headers) as r:
                        await r.read()


async def test_no_key_is_logged_in_process(
    everything_at_debug: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    gateway: str,
    gateway_settings: GatewaySettings,
    ingestion_api: str,
    ingestion_worker: None,
    ingestion_settings: IngestionSettings,
    auth_server: EmbeddingServer,
    http: aiohttp.ClientSession,
) -> None:
    await drive_gateway(http, gateway)
    async with serving_gateway(replace(gateway_settings, keys=KEYS)) as keyed:
        await drive_gateway(http, keyed)
    task_id = await drive_ingestion(http, ingestion_api)
    # The worker sent the document to the gateway with the service key.
    assert (await wait_task(http, ingestion_api, task_id))["status"] == "completed"
    await drive_grpc(f"127.0.0.1:{auth_server.port}")
    await drive_revealing_access_logs(http, gateway_settings, ingestion_settings)

    records = everything_at_debug.records
    assert len(records) > 20, "the logs were on"
    access = [r.getMessage() for r in records if r.name == "aiohttp.access"]
    assert any("/api/v1/ws?api_key=<redacted>" in line for line in access), access[:3]
    for shown in ('page?api_key=<redacted>" "<redacted>" "-"', '" "-" "<redacted>"'):
        assert any(shown in line for line in access), (shown, access[-3:])
    leaks = [
        (record.name, record.levelname, found_in(record_text(record)))
        for record in records
        if found_in(record_text(record))
    ]
    assert not leaks, leaks
    out, err = capfd.readouterr()
    assert not found_in(out + err)


def child_env(**settings: str) -> dict[str, str]:
    """A service's environment: ours cleared, keys configured, everything at DEBUG."""
    keys = ",".join(f"{tenant}:{hash_key(key)}" for tenant, key in TENANT_KEYS.items())
    return service_env(
        LOG_LEVEL="DEBUG", GRPC_VERBOSITY="DEBUG", EMBEDPIPE_API_KEYS=keys, **settings
    )


@contextlib.asynccontextmanager
async def running(
    args: list[str], env: dict[str, str], log_path: Path, url: str
) -> AsyncIterator[None]:
    """`python <args>` with its output in `log_path`, until the block ends; waits for
    `url`/healthz to answer first."""
    process = start_child(args, env, log_path)
    try:
        async with asyncio.timeout(30), aiohttp.ClientSession() as http:
            while True:
                assert process.poll() is None, f"{args} exited; see {log_path}"
                try:
                    async with http.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(15)


async def test_no_key_is_logged_by_the_service_processes(
    tmp_path: Path,
    auth_server: EmbeddingServer,
    ingestion_settings: IngestionSettings,
    http: aiohttp.ClientSession,
) -> None:
    grpc_target = f"127.0.0.1:{auth_server.port}"
    gateway_port, ingestion_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    ingestion_url = f"http://127.0.0.1:{ingestion_port}"
    gateway_env = child_env(
        GATEWAY_PORT=str(gateway_port),
        EMBEDDING_GRPC_TARGET=grpc_target,
        REDIS_URL=ingestion_settings.redis_url,
    )
    ingestion_env = child_env(
        INGESTION_PORT=str(ingestion_port),
        INGESTION_GRPC_PORT=str(free_port()),
        DATABASE_URL=ingestion_settings.database_url,
        REDIS_URL=ingestion_settings.redis_url,
        EMBEDDING_GRPC_TARGET=grpc_target,
        EMBEDDING_SERVICE_URL=gateway_url,
        INGESTION_SERVICE_KEY=TENANT_KEYS["*"],
    )
    logs = [tmp_path / "gateway.log", tmp_path / "ingestion.log"]
    async with (
        running(["-m", "gateway"], gateway_env, logs[0], gateway_url),
        running(["-m", "ingestion", "api"], ingestion_env, logs[1], ingestion_url),
    ):
        await drive_gateway(http, gateway_url)
        await drive_ingestion(http, ingestion_url)
    for log in logs:
        text = log.read_text(errors="replace")
        assert " DEBUG " in text, text  # the logs were on
        assert not found_in(text), (log.name, found_in(text))


def test_settings_show_no_key_hashes() -> None:
    """Settings get logged and printed in tracebacks; the key hashes stay out of them."""
    everything = [
        GatewaySettings(keys=KEYS),
        IngestionSettings(database_url="postgresql://unused", keys=KEYS, service_key="sk-1"),
        EmbeddingSettings(keys=KEYS),
    ]
    for settings in everything:
        text = repr(settings)
        assert f"KeyStore(<{len(TENANT_KEYS)} keys>)" in text
        assert not found_in(text), type(settings).__name__
