"""The same operation over HTTP and over gRPC gives equal results and equal errors.

Two tenants are given the same collections and documents; each case runs once over HTTP
as tenant-a and once over gRPC as tenant-b, and the answers must match field for field
(apart from what differs by tenant: its id, generated task ids and times). A third tenant
owns what neither may see. Errors match in kind (the HTTP status against the gRPC code),
message and the fields they name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from embedpipe.http.upstream import violations_of
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.ingestion.v1 import ingestion_service_pb2_grpc as pb_grpc
from embedpipe.protojson import struct_of, to_json
from ingestion.settings import IngestionSettings
from tests.support.ingestion_calls import COLLECTIONS, create_collection, upload_text
from tests.support.services import IngestionFronts, serving_ingestion_fronts
from tests.support.tenants import TENANT_KEYS, bearer

OVER_HTTP, OVER_GRPC, STRANGER = "tenant-a", "tenant-b", "tenant-c"
UPLOAD_LIMIT = 64 * 1024
#: What differs between two tenants' equal data.
PER_TENANT = frozenset(
    {"tenant_id", "task_id", "current_task_id", "created_at", "updated_at", "finished_at"}
)
#: The gRPC code each HTTP error status stands for.
CODE_OF_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
HANDBOOK = "# Leave\n\nStaff get 25 days of paid vacation a year.\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


@dataclass(frozen=True)
class World:
    """What a tenant has: its task of `doc-1`, and the stranger's ids."""

    task_id: str
    stranger_task_id: str
    first_page_token: str


@dataclass(frozen=True)
class Outcome:
    code: str  # "OK" or the gRPC code
    message: str = ""
    fields: tuple[str, ...] = ()
    body: Any = None


@dataclass(frozen=True)
class Upload:
    """An upload as a multipart form over HTTP, as header and file parts over gRPC."""

    filename: str
    content_type: str
    data: bytes
    document_id: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # under /api/v1; `{task}` and `{stranger_task}` are filled in
    rpc: str
    request: Callable[[World], Message | list[pb.UploadDocumentRequest]]
    body: Mapping[str, Any] | Upload | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    unwrap: str | None = None  # the field of the gRPC answer that is the HTTP body
    keyless: bool = False


def header(**fields: Any) -> list[pb.UploadDocumentRequest]:
    metadata = fields.pop("metadata", None)
    head = pb.DocumentHeader(collection_id="shared", **fields)
    if metadata is not None:
        head.metadata.CopyFrom(struct_of(metadata))
    return [pb.UploadDocumentRequest(header=head)]


def file_parts(upload: Upload, collection_id: str = "shared") -> list[pb.UploadDocumentRequest]:
    head = pb.DocumentHeader(
        collection_id=collection_id, filename=upload.filename, content_type=upload.content_type
    )
    if upload.document_id is not None:
        head.document_id = upload.document_id
    parts = [pb.UploadDocumentRequest(header=head)]
    step = 1000
    parts += [
        pb.UploadDocumentRequest(file=upload.data[i : i + step])
        for i in range(0, len(upload.data), step)
    ]
    return parts


def _fixed(message: Message) -> Callable[[World], Message]:
    return lambda _world: message


def _collection(**fields: Any) -> pb.CreateCollectionRequest:
    metadata = fields.pop("metadata", None)
    request = pb.CreateCollectionRequest(**fields)
    if metadata is not None:
        request.metadata.CopyFrom(struct_of(metadata))
    return request


def _search(**fields: Any) -> pb.SearchRequest:
    metadata_filter = fields.pop("filter", None)
    request = pb.SearchRequest(**fields)
    if metadata_filter is not None:
        request.filter.CopyFrom(struct_of(metadata_filter))
    return request


#: Searches asked the same over both transports: (case name, HTTP body).
SEARCHES: list[tuple[str, dict[str, Any]]] = [
    ("search in keyword mode", {"query": "vacation", "mode": "SEARCH_MODE_KEYWORD"}),
    ("search in vector mode", {"query": "vacation", "mode": "SEARCH_MODE_VECTOR", "top_k": 2}),
    (
        "search, hybrid, weighted",
        {"query": "paid vacation days", "vector_weight": 2, "keyword_weight": 0.5, "rrf_k": 10},
    ),
    (
        "search with conditions",
        {
            "query": "vacation",
            "document_ids": ["doc-1"],
            "conditions": [
                {"key": "team", "any_of": ["hr", "ops"]},
                {"key": "year", "range": {"gte": 2020}},
                {"key": "draft", "exists": False},
                {"key": "team", "equals": "hr"},
            ],
        },
    ),
    (
        "search: a range of numbers and strings",
        {"query": "q", "conditions": [{"key": "year", "range": {"gte": 2020, "lt": "2030"}}]},
    ),
    ("search: a condition with no test", {"query": "q", "conditions": [{"key": "year"}]}),
    (
        "search: an empty key part",
        {"query": "q", "conditions": [{"key": "a..b", "exists": True}]},
    ),
    ("search: rrf_k 0", {"query": "q", "rrf_k": 0}),
    ("search: no weight", {"query": "q", "vector_weight": 0, "keyword_weight": 0}),
    ("search: a bad document id", {"query": "q", "document_ids": ["ok", "no/slash"]}),
]
TEXT_FILE = Upload("notes.md", "text/markdown", b"# Notes\n\nThe office opens at nine.\n", "n-1")
CASES = [
    # --- collections
    Case(
        "create", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="fresh", chunk_tokens=64, metadata={"k": [1, 2.5]})),
        {"collection_id": "fresh", "chunk_tokens": 64, "metadata": {"k": [1, 2.5]}},
        unwrap="collection",
    ),
    Case(
        "create with defaults", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="plain")), {"collection_id": "plain"},
        unwrap="collection",
    ),
    Case(
        "create with a text search configuration", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="exact", text_search_config="simple")),
        {"collection_id": "exact", "text_search_config": "simple"}, unwrap="collection",
    ),
    Case(
        "create: unknown text search configuration", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="c", text_search_config="klingon")),
        {"collection_id": "c", "text_search_config": "klingon"},
    ),
    Case(
        "create: bad id", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="no spaces")), {"collection_id": "no spaces"},
    ),
    Case(
        "create: chunk_tokens too small", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="c", chunk_tokens=0)),
        {"collection_id": "c", "chunk_tokens": 0},
    ),
    Case(
        "create: overlap past half", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="c", chunk_tokens=64, overlap_tokens=40)),
        {"collection_id": "c", "chunk_tokens": 64, "overlap_tokens": 40},
    ),
    Case(
        "create: unknown model", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="c", model="no-such-model")),
        {"collection_id": "c", "model": "no-such-model"},
    ),
    Case(
        "create: taken id", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="shared")), {"collection_id": "shared"},
    ),
    Case(
        "create: NUL in metadata", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="c", metadata={"k": "a\x00b"})),
        {"collection_id": "c", "metadata": {"k": "a\x00b"}},
    ),
    Case(
        "create: metadata past 16 KiB", "POST", "/collections", "CreateCollection",
        _fixed(_collection(collection_id="c", metadata={"k": "x" * 17_000})),
        {"collection_id": "c", "metadata": {"k": "x" * 17_000}},
    ),
    Case(
        "get", "GET", "/collections/shared", "GetCollection",
        _fixed(pb.GetCollectionRequest(collection_id="shared")), unwrap="collection",
    ),
    Case(
        "get: missing", "GET", "/collections/none", "GetCollection",
        _fixed(pb.GetCollectionRequest(collection_id="none")),
    ),
    Case(
        "get: another tenant's", "GET", "/collections/strangers", "GetCollection",
        _fixed(pb.GetCollectionRequest(collection_id="strangers")),
    ),
    Case("list", "GET", "/collections", "ListCollections", _fixed(pb.ListCollectionsRequest())),
    Case(
        "list, first page", "GET", "/collections", "ListCollections",
        _fixed(pb.ListCollectionsRequest(page_size=1)), query={"page_size": "1"},
    ),
    Case(
        "list, next page", "GET", "/collections", "ListCollections",
        lambda w: pb.ListCollectionsRequest(page_size=1, page_token=w.first_page_token),
        query={"page_size": "1", "page_token": "{first_page_token}"},
    ),
    Case(
        "list: page_size 0", "GET", "/collections", "ListCollections",
        _fixed(pb.ListCollectionsRequest(page_size=0)), query={"page_size": "0"},
    ),
    Case(
        "list: page_size past the largest", "GET", "/collections", "ListCollections",
        _fixed(pb.ListCollectionsRequest(page_size=5000)), query={"page_size": "5000"},
    ),
    Case(
        "list: made-up page_token", "GET", "/collections", "ListCollections",
        _fixed(pb.ListCollectionsRequest(page_token="!!")), query={"page_token": "!!"},
    ),
    Case(
        "delete", "DELETE", "/collections/spare", "DeleteCollection",
        _fixed(pb.DeleteCollectionRequest(collection_id="spare")),
    ),
    Case(
        "delete: missing", "DELETE", "/collections/none", "DeleteCollection",
        _fixed(pb.DeleteCollectionRequest(collection_id="none")),
    ),
    Case(
        "delete: another tenant's", "DELETE", "/collections/strangers", "DeleteCollection",
        _fixed(pb.DeleteCollectionRequest(collection_id="strangers")),
    ),
    # --- documents
    Case(
        "upload text", "POST", "/collections/shared/documents", "UploadDocument",
        lambda _w: header(text="Hello there. A second line.", document_id="t-1",
                          metadata={"n": 1}),
        {"text": "Hello there. A second line.", "document_id": "t-1", "metadata": {"n": 1}},
    ),
    Case(
        "upload a file", "POST", "/collections/shared/documents", "UploadDocument",
        lambda _w: file_parts(TEXT_FILE), TEXT_FILE,
    ),
    Case(
        "upload: unsupported type", "POST", "/collections/shared/documents", "UploadDocument",
        lambda _w: file_parts(Upload("pixel.png", "image/png", PNG)),
        Upload("pixel.png", "image/png", PNG),
    ),
    Case(
        "upload: nothing to read", "POST", "/collections/shared/documents", "UploadDocument",
        lambda _w: header(text="   "), {"text": "   "},
    ),
    Case(
        "upload: no text", "POST", "/collections/shared/documents", "UploadDocument",
        lambda _w: header(document_id="x"), {"document_id": "x"},
    ),
    Case(
        "upload: metadata past 16 KiB", "POST", "/collections/shared/documents",
        "UploadDocument",
        lambda _w: header(text="Some text.", metadata={"n": list(range(4000))}),
        {"text": "Some text.", "metadata": {"n": list(range(4000))}},
    ),
    Case(
        "upload: bad document_id", "POST", "/collections/shared/documents", "UploadDocument",
        lambda _w: header(text="Some text.", document_id="bad id"),
        {"text": "Some text.", "document_id": "bad id"},
    ),
    Case(
        "upload: too large", "POST", "/collections/shared/documents", "UploadDocument",
        lambda _w: file_parts(Upload("big.txt", "text/plain", b"word " * UPLOAD_LIMIT)),
        Upload("big.txt", "text/plain", b"word " * UPLOAD_LIMIT),
    ),
    Case(
        "upload: missing collection", "POST", "/collections/none/documents", "UploadDocument",
        lambda _w: file_parts(TEXT_FILE, "none"), TEXT_FILE,
    ),
    Case(
        "list documents", "GET", "/collections/shared/documents", "ListDocuments",
        _fixed(pb.ListDocumentsRequest(collection_id="shared")),
    ),
    Case(
        "list documents, a page", "GET", "/collections/shared/documents", "ListDocuments",
        _fixed(pb.ListDocumentsRequest(collection_id="shared", page_size=1)),
        query={"page_size": "1"},
    ),
    Case(
        "list documents: another tenant's", "GET", "/collections/strangers/documents",
        "ListDocuments", _fixed(pb.ListDocumentsRequest(collection_id="strangers")),
    ),
    Case(
        "get document", "GET", "/collections/shared/documents/doc-1", "GetDocument",
        _fixed(pb.GetDocumentRequest(collection_id="shared", document_id="doc-1")),
        unwrap="document",
    ),
    Case(
        "get document: missing", "GET", "/collections/shared/documents/none", "GetDocument",
        _fixed(pb.GetDocumentRequest(collection_id="shared", document_id="none")),
    ),
    Case(
        "get document: another tenant's", "GET", "/collections/strangers/documents/doc-1",
        "GetDocument",
        _fixed(pb.GetDocumentRequest(collection_id="strangers", document_id="doc-1")),
    ),
    Case(
        "delete document", "DELETE", "/collections/shared/documents/doc-2", "DeleteDocument",
        _fixed(pb.DeleteDocumentRequest(collection_id="shared", document_id="doc-2")),
    ),
    Case(
        "delete document: missing", "DELETE", "/collections/shared/documents/none",
        "DeleteDocument",
        _fixed(pb.DeleteDocumentRequest(collection_id="shared", document_id="none")),
    ),
    # --- tasks
    Case(
        "get task", "GET", "/tasks/{task}", "GetTask",
        lambda w: pb.GetTaskRequest(task_id=w.task_id), unwrap="task",
    ),
    Case(
        "get task: missing", "GET", "/tasks/none", "GetTask",
        _fixed(pb.GetTaskRequest(task_id="none")),
    ),
    Case(
        "get task: another tenant's", "GET", "/tasks/{stranger_task}", "GetTask",
        lambda w: pb.GetTaskRequest(task_id=w.stranger_task_id),
    ),
    # --- search
    Case(
        "search", "POST", "/collections/shared/search", "Search",
        _fixed(_search(collection_id="shared", query="vacation days", top_k=3)),
        {"query": "vacation days", "top_k": 3},
    ),
    Case(
        "search with a filter", "POST", "/collections/shared/search", "Search",
        _fixed(_search(collection_id="shared", query="vacation", filter={"team": "hr"})),
        {"query": "vacation", "filter": {"team": "hr"}},
    ),
    Case(
        "search: top_k 0", "POST", "/collections/shared/search", "Search",
        _fixed(_search(collection_id="shared", query="q", top_k=0)),
        {"query": "q", "top_k": 0},
    ),
    Case(
        "search: top_k past the largest", "POST", "/collections/shared/search", "Search",
        _fixed(_search(collection_id="shared", query="q", top_k=101)),
        {"query": "q", "top_k": 101},
    ),
    Case(
        "search: blank query", "POST", "/collections/shared/search", "Search",
        _fixed(_search(collection_id="shared", query="  ")), {"query": "  "},
    ),
    Case(
        "search: NUL in the query", "POST", "/collections/shared/search", "Search",
        _fixed(_search(collection_id="shared", query="a\x00b")), {"query": "a\x00b"},
    ),
    *(
        Case(
            name, "POST", "/collections/shared/search", "Search",
            _fixed(json_format.ParseDict({"collection_id": "shared", **body}, pb.SearchRequest())),
            body,
        )
        for name, body in SEARCHES
    ),
    Case(
        "search: another tenant's", "POST", "/collections/strangers/search", "Search",
        _fixed(_search(collection_id="strangers", query="q")), {"query": "q"},
    ),
    # --- keys
    Case(
        "refused: no API key", "GET", "/collections", "ListCollections",
        _fixed(pb.ListCollectionsRequest()), keyless=True,
    ),
]  # fmt: skip


def _without(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    return value


def _fill(text: str, world: World) -> str:
    return text.format(
        task=world.task_id,
        stranger_task=world.stranger_task_id,
        first_page_token=world.first_page_token,
    )


async def over_http(http: aiohttp.ClientSession, url: str, case: Case, world: World) -> Outcome:
    headers = {} if case.keyless else bearer(OVER_HTTP)
    options: dict[str, Any] = {"params": {k: _fill(v, world) for k, v in case.query.items()}}
    if isinstance(case.body, Upload):
        form = aiohttp.FormData()
        form.add_field(
            "file", case.body.data, filename=case.body.filename,
            content_type=case.body.content_type,
        )  # fmt: skip
        if case.body.document_id is not None:
            form.add_field("document_id", case.body.document_id)
        options["data"] = form
    elif case.body is not None:
        options["json"] = case.body
    path = f"{url}/api/v1{_fill(case.path, world)}"
    async with http.request(case.method, path, headers=headers, **options) as r:
        body = None if r.status == 204 else await r.json()
        if r.status >= 400:
            assert body is not None
            error = body["error"]
            fields = tuple(
                v["field"]
                for detail in error.get("details", [])
                for v in detail.get("fieldViolations", [])
            )
            return Outcome(CODE_OF_STATUS[r.status], error["message"], fields)
    return Outcome("OK", body=_without(body or {}, PER_TENANT))


async def over_grpc(stub: pb_grpc.IngestionServiceAsyncStub, case: Case, world: World) -> Outcome:
    metadata = () if case.keyless else (("authorization", f"Bearer {TENANT_KEYS[OVER_GRPC]}"),)
    request = case.request(world)
    try:
        if isinstance(request, list):
            reply = await stub.UploadDocument(iter(request), metadata=metadata)
        else:
            reply = await getattr(stub, case.rpc)(request, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        fields = tuple(v.field for v in violations_of(exc))
        return Outcome(exc.code().name, exc.details() or "", fields)
    answer = getattr(reply, case.unwrap) if case.unwrap else reply
    return Outcome("OK", body=_without(to_json(answer), PER_TENANT))


async def _give(http: aiohttp.ClientSession, url: str, tenant: str) -> str:
    """A tenant's collections and documents; the task id of its `doc-1`."""
    body = {"collection_id": "shared", "metadata": {"team": "hr", "year": 2024}}
    async with http.post(url + COLLECTIONS, json=body, headers=bearer(tenant)) as r:
        assert r.status == 201, await r.text()
    await create_collection(http, url, "spare", tenant)
    accepted = await upload_text(http, url, "shared", "doc-1", HANDBOOK, tenant)
    await upload_text(http, url, "shared", "doc-2", "# Parking\n\nLevel two.\n", tenant)
    return str(accepted["task_id"])


@pytest.fixture
def ingestion_settings(ingestion_settings: IngestionSettings) -> IngestionSettings:
    return replace(ingestion_settings, max_upload_bytes=UPLOAD_LIMIT)


@pytest.fixture
async def fronts(ingestion_settings: IngestionSettings) -> AsyncIterator[IngestionFronts]:
    async with serving_ingestion_fronts(ingestion_settings) as served:
        yield served


@pytest.fixture
async def stub(fronts: IngestionFronts) -> AsyncIterator[pb_grpc.IngestionServiceAsyncStub]:
    async with grpc.aio.insecure_channel(fronts.grpc_target) as channel:
        yield pb_grpc.IngestionServiceStub(channel)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_http_and_grpc_agree(
    case: Case,
    fronts: IngestionFronts,
    stub: pb_grpc.IngestionServiceAsyncStub,
    http: aiohttp.ClientSession,
) -> None:
    task_a = await _give(http, fronts.url, OVER_HTTP)
    task_b = await _give(http, fronts.url, OVER_GRPC)
    await create_collection(http, fronts.url, "strangers", STRANGER)
    stranger = await upload_text(http, fronts.url, "strangers", "doc-1", HANDBOOK, STRANGER)
    async with http.get(
        fronts.url + COLLECTIONS, params={"page_size": "1"}, headers=bearer(OVER_HTTP)
    ) as r:
        token = (await r.json())["next_page_token"]
    world = World(task_a, stranger["task_id"], token)

    by_http = await over_http(http, fronts.url, case, world)
    by_grpc = await over_grpc(stub, case, replace(world, task_id=task_b))

    assert by_http == by_grpc
    if ":" in case.name:  # "operation: what is wrong"
        assert by_http.code != "OK" and by_http.message
    else:
        assert by_http.code == "OK"
