"""The official OpenAI client, pointed at the gateway, gets embedpipe's vectors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import numpy as np
import numpy.typing as npt
import openai
import pytest
from openai import AsyncOpenAI

from embedding.server import EmbeddingServer
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.support.jobs import SENTENCES
from tests.support.tenants import TENANT_KEYS, bearer


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        api_key=TENANT_KEYS["tenant-a"], base_url=f"{gateway}/v1", max_retries=0
    ) as openai_client:
        yield openai_client


async def embed_over_grpc(server: EmbeddingServer, texts: list[str]) -> npt.NDArray[np.float32]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reply = await pb_grpc.EmbeddingServiceStub(channel).Embed(
            pb.EmbedRequest(inputs=texts, model="all-MiniLM-L6-v2"),
            metadata=(("authorization", f"Bearer {TENANT_KEYS['tenant-a']}"),),
        )
    return np.array([list(e.values) for e in reply.embeddings], dtype=np.float32)


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_the_openai_client_gets_the_same_vectors_as_embed(
    client: AsyncOpenAI, auth_server: EmbeddingServer, encoding: str
) -> None:
    texts = SENTENCES[:3]
    if encoding == "float":
        response = await client.embeddings.create(
            model="all-MiniLM-L6-v2", input=texts, encoding_format="float"
        )
    else:
        # The client's default: it asks for base64 and decodes it itself.
        response = await client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    assert [d.index for d in response.data] == [0, 1, 2]
    assert response.model == "all-MiniLM-L6-v2" and got.shape == (3, 384)
    assert response.usage.prompt_tokens > 3
    assert np.allclose(got, await embed_over_grpc(auth_server, texts), atol=1e-6)


async def test_a_single_string_input_works(client: AsyncOpenAI) -> None:
    response = await client.embeddings.create(model="all-MiniLM-L6-v2", input="hello world")
    assert len(response.data) == 1 and len(response.data[0].embedding) == 384


async def test_models_are_listed(client: AsyncOpenAI) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == ["all-MiniLM-L6-v2"]


async def test_errors_arrive_in_openais_shape(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="text-embedding-ada-002", input="x")
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "model"
    assert body["type"] == "invalid_request_error" and "unknown model" in body["message"]

    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=128)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "dimensions"


async def test_a_wrong_key_is_an_authentication_error(gateway: str) -> None:
    async with AsyncOpenAI(api_key="nope", base_url=f"{gateway}/v1", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.embeddings.create(model="all-MiniLM-L6-v2", input="x")


async def test_token_arrays_and_bad_encodings_name_the_field(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    for body, param in [
        ({"model": "all-MiniLM-L6-v2", "input": [[1, 2, 3]]}, "input"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x"}, "model"),
    ]:
        async with http.post(
            f"{gateway}/v1/embeddings", json=body, headers=bearer("tenant-a")
        ) as r:
            assert r.status == 400
            error = (await r.json())["error"]
            assert error["param"] == param and error["type"] == "invalid_request_error"
