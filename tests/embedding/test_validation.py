"""Every invalid request is refused with INVALID_ARGUMENT naming the bad field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tokenizers import Tokenizer

from embedding.keys import EmbeddingKeys
from embedding.providers.local import LocalOnnxProvider
from embedding.settings import EmbeddingSettings
from embedpipe import bundled_model
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.support.jobs import SENTENCES, seed_request
from tests.support.services import serving_embedding

Mutation = Callable[[pb.GenerateEmbeddingsRequest], None]


def _clear_chunks(r: pb.GenerateEmbeddingsRequest) -> None:
    del r.chunks[:]


def _set(field: str, value: str) -> Mutation:
    return lambda r: setattr(r, field, value)


def _chunk(index: int, field: str, value: str) -> Mutation:
    return lambda r: setattr(r.chunks[index], field, value)


CASES: list[tuple[str, Mutation, str, str]] = [
    ("empty chunks", _clear_chunks, "chunks", "at least one chunk"),
    ("empty chunk_id", _chunk(1, "chunk_id", ""), "chunks[1].chunk_id", "required"),
    ("duplicate chunk_id", _chunk(2, "chunk_id", "doc-1:0"), "chunks[2].chunk_id", "duplicates"),
    ("empty text", _chunk(0, "text", ""), "chunks[0].text", "empty"),
    ("blank text", _chunk(1, "text", "  \n "), "chunks[1].text", "empty"),
    ("text over the char limit", _chunk(0, "text", "x" * 2001), "chunks[0].text", "2000"),
    ("text over the model's tokens", _chunk(2, "text", "a b " * 150), "chunks[2].text", "tokens"),
    ("unknown model", _set("model", "text-embedding-ada-002"), "model", "unknown model"),
    ("missing document_id", _set("document_id", ""), "document_id", "required"),
    ("missing collection_id", _set("collection_id", ""), "collection_id", "required"),
    ("missing tenant_id", _set("tenant_id", ""), "tenant_id", "required"),
    ("missing task_id", _set("task_id", ""), "task_id", "required"),
    ("missing callback_queue", _set("callback_queue", ""), "callback_queue", "required"),
    ("arbitrary redis key", _set("callback_queue", "embedding:jobs"), "callback_queue", "allowed"),
    (
        "queue name with a newline",
        _set("callback_queue", "a:callbacks:x\nFLUSHALL"),
        "callback_queue",
        "allowed",
    ),
]


def _violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        fields += [v.field for v in bad.field_violations]
    return fields


@pytest.mark.parametrize(("case", "mutate", "field", "says"), CASES, ids=[c[0] for c in CASES])
async def test_invalid_generate_request_names_the_field(
    stub: pb_grpc.EmbeddingServiceAsyncStub,
    redis: aioredis.Redis,
    case: str,
    mutate: Mutation,
    field: str,
    says: str,
) -> None:
    request = seed_request()
    mutate(request)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GenerateEmbeddings(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert details.startswith(f"{field}:") and says in details
    assert field in _violations(caught.value)
    # Nothing was enqueued.
    assert await redis.xlen(EmbeddingKeys().jobs) == 0


async def test_every_bad_field_is_named_at_once(stub: pb_grpc.EmbeddingServiceAsyncStub) -> None:
    request = seed_request()
    request.tenant_id = ""
    request.chunks[0].text = ""
    request.callback_queue = "somewhere"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GenerateEmbeddings(request)
    assert _violations(caught.value) == ["tenant_id", "chunks[0].text", "callback_queue"]


async def test_too_many_chunks_is_refused(stub: pb_grpc.EmbeddingServiceAsyncStub) -> None:
    request = seed_request(texts=[f"sentence {i}" for i in range(11)])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GenerateEmbeddings(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit is 10" in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.EmbedRequest(), "inputs"),
        (pb.EmbedRequest(inputs=["ok", ""]), "inputs[1]"),
        (pb.EmbedRequest(inputs=["ok"], model="nope"), "model"),
        (pb.EmbedRequest(inputs=["ok"], dimensions=128), "dimensions"),
        (pb.EmbedRequest(inputs=["word " * 300]), "inputs[0]"),
    ],
    ids=["no inputs", "empty input", "unknown model", "fixed dimensions", "too many tokens"],
)
async def test_invalid_embed_request_names_the_field(
    stub: pb_grpc.EmbeddingServiceAsyncStub, request_: pb.EmbedRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(caught.value)


async def test_a_request_over_the_total_char_limit_is_refused(
    settings: EmbeddingSettings, local_provider: LocalOnnxProvider, redis: aioredis.Redis
) -> None:
    tight = replace(settings, limits=replace(settings.limits, max_request_chars=100))
    async with serving_embedding(tight, local_provider) as (_server, channel):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.EmbeddingServiceStub(channel).GenerateEmbeddings(
                seed_request(texts=SENTENCES[:3])
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _violations(caught.value) == ["chunks"]
        assert "limit is 100" in (caught.value.details() or "")


async def test_a_pattern_that_allows_colons_still_keeps_callbacks_off_our_own_lists(
    settings: EmbeddingSettings, local_provider: LocalOnnxProvider, redis: aioredis.Redis
) -> None:
    loose = replace(settings, callback_queue_pattern=r"[a-z]+:callbacks:[A-Za-z0-9_.:-]+")
    async with serving_embedding(loose, local_provider) as (_server, channel):
        stub = pb_grpc.EmbeddingServiceStub(channel)
        for queue in (
            "ingestion:callbacks:processing:worker-1",
            "ingestion:callbacks:dead",
            "ingestion:callbacks:consumers",
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GenerateEmbeddings(seed_request(callback_queue=queue))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, queue
            assert _violations(caught.value) == ["callback_queue"], queue
            assert "reserved" in (caught.value.details() or "")
        # A queue of one's own that merely mentions those words is fine.
        reply = await stub.GenerateEmbeddings(
            seed_request(callback_queue="ingestion:callbacks:dead-letters-of-mine")
        )
        assert reply.job_id
        assert await redis.exists("ingestion:callbacks:processing:worker-1") == 0


async def test_texts_near_the_models_limit_are_counted_exactly(
    stub: pb_grpc.EmbeddingServiceAsyncStub,
) -> None:
    """Validation counts tokens only where its cheap bound cannot clear a text (accents,
    symbols, words the vocabulary lacks): such a text is accepted when its exact count
    fits, and refused with that count when it does not."""
    fits = [
        "café au lait " * 60,  # not ASCII: no bound
        "zqx " * 80,  # ASCII, every word split in pieces
        "fine. " * 120,
    ]
    reply = await stub.GenerateEmbeddings(seed_request(texts=fits))
    assert reply.chunk_count == 3
    too_long = "café au lait " * 120
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GenerateEmbeddings(seed_request(texts=["ok", too_long], task_id="task-2"))
    counter = Tokenizer.from_file(str(bundled_model.tokenizer_path()))
    counter.no_truncation()
    count = len(counter.encode(too_long).ids)
    assert count > 256
    assert _violations(caught.value) == ["chunks[1].text"]
    assert f"has {count} tokens" in (caught.value.details() or "")
