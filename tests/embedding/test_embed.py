"""Embed and ListModels: synchronous vectors that match the model, and model discovery."""

from __future__ import annotations

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from embedding.providers.local import LocalOnnxProvider
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.support.jobs import SENTENCES


def _matrix(reply: pb.EmbedResponse) -> npt.NDArray[np.float32]:
    return np.array([list(e.values) for e in reply.embeddings], dtype=np.float32)


async def test_embed_matches_the_local_model(
    stub: pb_grpc.EmbeddingServiceAsyncStub, local_provider: LocalOnnxProvider
) -> None:
    reply = await stub.Embed(pb.EmbedRequest(inputs=SENTENCES))
    assert reply.model == "all-MiniLM-L6-v2" and reply.dimensions == 384
    assert [e.index for e in reply.embeddings] == list(range(len(SENTENCES)))
    # The tokens the model read: each sentence's own, no padding counted (or attended).
    assert reply.usage.prompt_tokens == sum(local_provider.count_tokens(SENTENCES))
    got = _matrix(reply)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    direct = (await local_provider.embed(SENTENCES)).vectors
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    cosines = (got * direct).sum(axis=1)
    assert cosines.min() >= 0.999


async def test_close_sentences_score_higher_than_unrelated_ones(
    stub: pb_grpc.EmbeddingServiceAsyncStub,
) -> None:
    query = "A kitten was resting on the sunny window ledge."
    reply = await stub.Embed(pb.EmbedRequest(inputs=[query, *SENTENCES]))
    vectors = _matrix(reply)
    scores = vectors[1:] @ vectors[0]
    assert int(np.argmax(scores)) == 0  # "The cat sat quietly on the warm windowsill."
    assert scores[0] > 0.5 > max(scores[1:])


async def test_normalize_false_returns_raw_pooled_vectors(
    stub: pb_grpc.EmbeddingServiceAsyncStub,
) -> None:
    reply = await stub.Embed(pb.EmbedRequest(inputs=SENTENCES[:2], normalize=False))
    norms = np.linalg.norm(_matrix(reply), axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)


async def test_truncate_embeds_inputs_longer_than_the_model_reads(
    stub: pb_grpc.EmbeddingServiceAsyncStub,
) -> None:
    long_text = "word " * 400
    reply = await stub.Embed(pb.EmbedRequest(inputs=[long_text], truncate=True))
    assert len(reply.embeddings[0].values) == 384
    assert reply.usage.prompt_tokens == 256


async def test_list_models_names_the_default_model(stub: pb_grpc.EmbeddingServiceAsyncStub) -> None:
    reply = await stub.ListModels(pb.ListModelsRequest())
    (model,) = reply.models
    assert (model.name, model.provider, model.dimensions) == ("all-MiniLM-L6-v2", "local", 384)
    assert model.max_input_tokens == 256 and model.is_default and not model.supports_dimensions


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    async for response in stub.ServerReflectionInfo(iter([request])):
        names |= {s.name for s in response.list_services_response.service}
    assert {"embedpipe.embedding.v1.EmbeddingService", "grpc.health.v1.Health"} <= names


async def test_a_request_over_the_default_4mb_grpc_limit_is_accepted(
    stub: pb_grpc.EmbeddingServiceAsyncStub,
) -> None:
    # 8 chunks (the test limit is 10) with 700 kB of metadata each: about 5.6 MB.
    request = pb.GenerateEmbeddingsRequest(
        document_id="big", collection_id="c", tenant_id="t", task_id="t1",
        callback_queue="ingestion:callbacks:embedding",
    )  # fmt: skip
    for i in range(8):
        chunk = request.chunks.add(chunk_id=f"c{i}", text=SENTENCES[i % len(SENTENCES)])
        chunk.metadata.update({"blob": "m" * 700_000})
    assert request.ByteSize() > 4 * 1024 * 1024
    reply = await stub.GenerateEmbeddings(request)
    assert reply.chunk_count == 8


@pytest.mark.parametrize("dimensions", [0, -3])
async def test_dimensions_must_be_positive(
    stub: pb_grpc.EmbeddingServiceAsyncStub, dimensions: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(pb.EmbedRequest(inputs=["x"], dimensions=dimensions))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dimensions" in (caught.value.details() or "")
