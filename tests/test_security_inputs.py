"""What a client sends cannot reach further than it should: callbacks go only to callback
queues, bodies are bounded, and no URL a client gives is ever fetched."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from embedding.keys import EmbeddingKeys
from embedding.server import EmbeddingServer
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from ingestion.keys import IngestionKeys
from ingestion.settings import IngestionSettings
from tests.support.documents import build_docx
from tests.support.gateway_calls import GENERATE, fields_named, seed_payload
from tests.support.ingestion_calls import COLLECTIONS, create_collection
from tests.support.services import serving_app, serving_ingestion
from tests.support.tenants import TENANT_KEYS, bearer

A = "tenant-a"
AS_A = (("authorization", f"Bearer {TENANT_KEYS[A]}"),)


@pytest.fixture
async def guarded(auth_server: EmbeddingServer) -> AsyncIterator[pb_grpc.EmbeddingServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        yield pb_grpc.EmbeddingServiceStub(channel)


# callback_queue: callback queues only --------------------------------------------------------

EMBEDDING_KEYS, INGESTION_KEYS = EmbeddingKeys(), IngestionKeys()


async def fill_our_keys(redis: aioredis.Redis) -> list[str]:
    """Every kind of key the services keep in Redis, each holding something; their names."""
    streams = [
        EMBEDDING_KEYS.jobs,
        EMBEDDING_KEYS.dead_letter,
        INGESTION_KEYS.jobs,
        INGESTION_KEYS.dead_letter,
    ]
    for stream in streams:
        await redis.xadd(stream, {"existing": "entry"})
    lists = [INGESTION_KEYS.callbacks_dead_letter, INGESTION_KEYS.processing("worker-1")]
    for name in lists:
        await redis.lpush(name, b'{"existing": "entry"}')
    await redis.zadd(INGESTION_KEYS.processing_consumers, {"worker-1": 1})
    strings = [EMBEDDING_KEYS.dedupe("f" * 64), EMBEDDING_KEYS.done("job-1"), "foo"]
    for name in strings:
        await redis.set(name, "existing")
    return [*streams, *lists, INGESTION_KEYS.processing_consumers, *strings]


def queue_names(ours: list[str]) -> list[str]:
    """Names a caller must not have callbacks pushed to: our keys, and other odd names."""
    return [
        *ours,
        INGESTION_KEYS.events(A),  # a pub/sub channel, not a key
        "ingestion:callbacks",
        "http://127.0.0.1:9/callback",
        "ingestion:callbacks:embedding ",
        "ingestion:callbacks:*",
    ]


async def snapshot(redis: aioredis.Redis, names: list[str]) -> dict[str, bytes | None]:
    return {name: await redis.dump(name) for name in names}


async def test_grpc_generate_refuses_any_key_but_a_callback_queue(
    guarded: pb_grpc.EmbeddingServiceAsyncStub, redis: aioredis.Redis
) -> None:
    ours = await fill_our_keys(redis)
    names = queue_names(ours)
    before = await snapshot(redis, names)
    for i, name in enumerate(names):
        request = pb.GenerateEmbeddingsRequest(
            document_id="d", collection_id="c", tenant_id=A, task_id=f"t-{i}", callback_queue=name
        )
        request.chunks.add(chunk_id="d:0", text="Some text.")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await guarded.GenerateEmbeddings(request, metadata=AS_A)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert (caught.value.details() or "").startswith("callback_queue:"), name
    assert await snapshot(redis, names) == before  # no key written, none created


async def test_gateway_generate_refuses_any_key_but_a_callback_queue(
    gateway: str, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    ours = await fill_our_keys(redis)
    names = queue_names(ours)
    before = await snapshot(redis, names)
    for i, name in enumerate(names):
        payload = seed_payload(callback_queue=name, task_id=f"t-{i}")
        async with http.post(gateway + GENERATE, json=payload, headers=bearer(A)) as r:
            assert r.status == 400, (name, await r.text())
            assert fields_named(await r.json()) == ["callback_queue"], name
    assert await snapshot(redis, names) == before


# Size limits ---------------------------------------------------------------------------------


async def chunked(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`data` as a chunked body: no Content-Length announces its size."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def test_the_gateway_body_limit_holds_without_a_content_length(
    gateway: str, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    big_text = "word " * (600 * 1024)  # 3 MB: over the tests' 2 MiB limit
    bodies = {
        GENERATE: seed_payload(chunks=[{"chunk_id": "x", "text": big_text}]),
        "/v1/embeddings": {"model": "all-MiniLM-L6-v2", "input": big_text},
    }
    headers = {**bearer(A), "Content-Type": "application/json"}
    for path, body in bodies.items():
        data = chunked(json.dumps(body).encode())
        async with http.post(gateway + path, data=data, headers=headers) as r:
            assert r.status == 413, await r.text()
            error = (await r.json())["error"]
        if path == GENERATE:
            assert error["status"] == "PAYLOAD_TOO_LARGE"
        else:  # OpenAI's shape
            assert error["type"] == "invalid_request_error" and error["code"] == (
                "payload_too_large"
            )
    assert await redis.xlen(EmbeddingKeys().jobs) == 0


@pytest.fixture
async def small_ingestion(
    ingestion_settings: IngestionSettings, http: aiohttp.ClientSession
) -> AsyncIterator[str]:
    """The ingestion API with a 1 KiB upload limit and a collection "small"."""
    async with serving_ingestion(replace(ingestion_settings, max_upload_bytes=1024)) as url:
        await create_collection(http, url, "small")
        yield url


async def test_a_huge_json_text_document_is_413(
    small_ingestion: str, http: aiohttp.ClientSession
) -> None:
    documents = f"{small_ingestion}{COLLECTIONS}/small/documents"
    body = json.dumps({"text": "word " * 40_000}).encode()  # 200 kB: past the request limit
    headers = {**bearer(A), "Content-Type": "application/json"}
    for data in (body, chunked(body)):
        async with http.post(documents, data=data, headers=headers) as r:
            assert r.status == 413, await r.text()
            assert (await r.json())["error"]["status"] == "PAYLOAD_TOO_LARGE"
    # A multipart upload sent chunked is cut off at the limit too.
    boundary = "limit-test"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + b"word " * 40_000
        + f"\r\n--{boundary}--\r\n".encode()
    )
    multipart_headers = {**bearer(A), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with http.post(documents, data=chunked(multipart), headers=multipart_headers) as r:
        assert r.status == 413, await r.text()
    async with http.get(documents, headers=bearer(A)) as r:
        assert (await r.json())["documents"] == []


async def test_huge_json_bodies_of_other_ingestion_routes_are_413(
    small_ingestion: str, http: aiohttp.ClientSession
) -> None:
    padding = "x" * 200_000
    headers = {**bearer(A), "Content-Type": "application/json"}
    requests = {
        f"{small_ingestion}{COLLECTIONS}": {"collection_id": "big", "metadata": {"p": padding}},
        f"{small_ingestion}{COLLECTIONS}/small/search": {"query": padding},
    }
    for url, body in requests.items():
        for data in (json.dumps(body).encode(), chunked(json.dumps(body).encode())):
            async with http.post(url, data=data, headers=headers) as r:
                assert r.status == 413, await r.text()
    async with http.get(f"{small_ingestion}{COLLECTIONS}/big", headers=bearer(A)) as r:
        assert r.status == 404


# No URL a client gives is fetched ------------------------------------------------------------


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that records every request it gets; yields its URL and the record."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path_qs}")
        return web.Response(text="<html>fetched</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with serving_app(app) as url:
        yield url, hits


def html_pointing_at(url: str) -> bytes:
    return f"""<!DOCTYPE html><html><head><title>Links</title>
<link rel="stylesheet" href="{url}/style.css"><script src="{url}/script.js"></script>
<meta http-equiv="refresh" content="0; url={url}/refresh">
<base href="{url}/base/"></head><body><h1>Links</h1>
<p>A paragraph with <a href="{url}/link">a link</a> and <img src="{url}/image.png">.</p>
<iframe src="{url}/frame"></iframe><object data="{url}/object"></object>
</body></html>""".encode()


def docx_pointing_at(url: str) -> bytes:
    """A Word file whose XML declares an external entity and links an external image."""
    source = build_docx([(None, "Paragraph &xxe; of a document.")])
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(source)) as original,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as patched,
    ):
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "word/document.xml":
                text = data.decode().replace("&amp;xxe;", "&xxe;")
                head, sep, rest = text.partition("?>")
                doctype = f'<!DOCTYPE doc [<!ENTITY xxe SYSTEM "{url}/entity">]>'
                data = (head + sep + doctype + rest).encode()
            if info.filename == "word/_rels/document.xml.rels":
                data = data.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdX" TargetMode="External" Type="http://schemas.'
                    b"openxmlformats.org/officeDocument/2006/relationships/image"
                    b'" Target="' + url.encode() + b'/docx-image.png"/></Relationships>',
                )
            patched.writestr(info, data)
    return out.getvalue()


async def test_no_route_fetches_a_url_a_client_sends(
    gateway: str,
    ingestion_api: str,
    auth_server: EmbeddingServer,
    http: aiohttp.ClientSession,
    recorder: tuple[str, list[str]],
) -> None:
    url, hits = recorder
    statuses: list[tuple[str, int]] = []

    async def post(where: str, label: str = "", **kwargs: Any) -> None:
        async with http.post(where, headers=bearer(A), **kwargs) as r:
            statuses.append((f"POST {where} {label or str(kwargs)[:100]}", r.status))

    # The gateway: chunk texts, metadata, ids, model and callback queue.
    await post(
        gateway + GENERATE,
        json=seed_payload(
            chunks=[{"chunk_id": url, "text": url, "metadata": {"url": url, "image": url}}],
            document_id=url,
        ),
    )
    await post(gateway + GENERATE, json=seed_payload(callback_queue=url))
    await post(gateway + GENERATE, json=seed_payload(model=url))
    openai: dict[str, Any] = {"model": "all-MiniLM-L6-v2", "input": [url, f"see {url}"]}
    await post(gateway + "/v1/embeddings", json={**openai, "user": url})
    await post(gateway + "/v1/embeddings", json={"model": url, "input": url})
    # The ingestion API: collection fields, JSON documents, uploads, search.
    collections = ingestion_api + COLLECTIONS
    await post(collections, json={"collection_id": "links", "metadata": {"url": url}})
    await post(collections, json={"collection_id": "other", "model": url})
    documents = f"{collections}/links/documents"
    await post(documents, json={"url": url})
    await post(documents, json={"text": url, "filename": url, "metadata": {"source": url}})
    await post(documents, json={"text": "x", "filename": f"{url}/remote.pdf"})
    uploads = [
        (f"{url}/remote.md", "text/markdown", f"# Remote\n\n![image]({url}/i.png) [link]({url})"),
        (f"{url}/page.html", "text/html", html_pointing_at(url)),
        ("links.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
         docx_pointing_at(url)),
        ("list.uri", "text/uri-list", f"{url}/listed\n"),
        ("remote.pdf", "application/pdf", url),
    ]  # fmt: skip
    for filename, content_type, content in uploads:
        form = aiohttp.FormData()
        form.add_field("file", content, filename=filename, content_type=content_type)
        form.add_field("metadata", json.dumps({"url": url}))
        await post(documents, f"upload {filename}", data=form)
    search = f"{collections}/links/search"
    await post(search, json={"query": url, "filter": {"url": url}})
    # gRPC, directly.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_server.port}") as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        await stub.Embed(pb.EmbedRequest(inputs=[url]), metadata=AS_A)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Embed(pb.EmbedRequest(inputs=[url], model=url), metadata=AS_A)

    await asyncio.sleep(0.3)  # anything fetched in the background would have arrived
    assert hits == []
    async with http.get(url + "/control") as r:  # the recorder does record
        assert r.status == 200
    assert hits == ["GET /control"]
    odd = [(what, status) for what, status in statuses if status >= 500 or status < 200]
    assert not odd, odd
    assert {status for _what, status in statuses} <= {200, 201, 202, 400, 415, 422}
