"""Clients in other languages against a live embedding server: Node.js and `buf curl`.

The Node client (tests/node/embedding_client.js) uses @grpc/grpc-js and @grpc/proto-loader
on the .proto files in protos/; `buf curl` knows nothing but the URL and learns the schema
through server reflection. Both run as child processes on the test's event loop, which
also runs the gRPC server, so they are awaited, never waited for in a blocking call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2

from embedding.keys import EmbeddingKeys
from embedding.server import EmbeddingServer
from embedding.worker import EmbeddingWorker
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.support.jobs import CALLBACK_QUEUE, SENTENCES, pop_callbacks, seed_request
from tests.support.processes import REPO
from tests.support.services import WorkerFactory

NODE_DIR = REPO / "tests" / "node"
NODE_CLIENT = NODE_DIR / "embedding_client.js"
BUF = REPO / "scripts" / "tools" / "node_modules" / ".bin" / "buf"
SERVICE = "embedpipe.embedding.v1.EmbeddingService"
CHILD_TIMEOUT_S = 60.0
DIMENSIONS = 384


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.stdout.strip(), f"no output (rc={self.returncode}): {self.stderr}"
        return json.loads(self.stdout)


async def run(*args: str) -> Result:
    """Run a child process without blocking the event loop the server runs on."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def node() -> str:
    found = shutil.which("node")
    assert found, "node (Node.js >= 20) is not on PATH; the polyglot tests need it"
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        assert (NODE_DIR / "node_modules" / package / "package.json").is_file(), (
            f"{package} is not installed: run `npm ci --prefix tests/node`"
        )
    return found


def buf() -> str:
    assert BUF.is_file(), "buf is not installed: run `npm ci --prefix scripts/tools`"
    return str(BUF)


async def node_call(server: EmbeddingServer, method: str, request: dict[str, Any]) -> Result:
    return await run(
        node(), str(NODE_CLIENT), f"127.0.0.1:{server.port}", method, json.dumps(request)
    )


async def buf_curl(server: EmbeddingServer, method: str, request: dict[str, Any]) -> Result:
    return await run(
        buf(),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--data",
        json.dumps(request),
        f"http://127.0.0.1:{server.port}/{SERVICE}/{method}",
    )


def seed_payload(texts: list[str], *, task_id: str = "task-1") -> dict[str, Any]:
    """The seed's JSON request: snake_case names, metadata as a plain JSON object."""
    payload = json_format.MessageToDict(
        seed_request(texts=texts, task_id=task_id), preserving_proto_field_name=True
    )
    for i, chunk in enumerate(payload["chunks"]):
        chunk["metadata"] = {"position": i, "source": "s3://bucket/doc-1.pdf", "tags": ["a"]}
    return payload


async def python_vectors(stub: pb_grpc.EmbeddingServiceAsyncStub, texts: list[str]) -> Any:
    reply = await stub.Embed(pb.EmbedRequest(inputs=texts))
    return np.array([list(e.values) for e in reply.embeddings])


def assert_same_vectors(got: list[list[float]], expected: Any) -> None:
    vectors = np.array(got)
    assert vectors.shape == expected.shape
    cosine = (vectors * expected).sum(axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert (cosine >= 0.999).all(), cosine


def assert_one_vector_per_chunk(callback: dict[str, Any], payload: dict[str, Any]) -> None:
    assert callback["status"] == "success"
    assert [e["chunk_id"] for e in callback["embeddings"]] == [
        c["chunk_id"] for c in payload["chunks"]
    ]
    assert all(len(e["embedding"]) == DIMENSIONS for e in callback["embeddings"])


async def test_node_generate_embeddings_queues_a_job_whose_callback_has_a_vector_per_chunk(
    server: EmbeddingServer,
    stub: pb_grpc.EmbeddingServiceAsyncStub,
    redis: aioredis.Redis,
    worker_factory: WorkerFactory,
) -> None:
    payload = seed_payload(SENTENCES[:3])
    result = await node_call(server, "GenerateEmbeddings", payload)
    assert result.returncode == 0, result
    reply = result.json()
    assert reply["job_id"] and reply["task_id"] == "task-1" and reply["chunk_count"] == 3
    assert reply["deduplicated"] is False
    accepted = Timestamp()
    accepted.FromJsonString(reply["accepted_time"])

    # The job as queued: the metadata objects arrived as google.protobuf.Struct values.
    entries: Any = await redis.xrange(EmbeddingKeys().jobs)
    ((_, fields),) = entries
    assert fields[b"job_id"].decode() == reply["job_id"]
    assert accepted.ToMilliseconds() == int(fields[b"accepted_ms"])
    queued = pb.GenerateEmbeddingsRequest.FromString(fields[b"request"])
    assert [json_format.MessageToDict(c.metadata) for c in queued.chunks] == [
        c["metadata"] for c in payload["chunks"]
    ]

    async with worker_factory():
        (callback,) = await pop_callbacks(redis, 1)
    assert callback["job_id"] == reply["job_id"] and callback["task_id"] == "task-1"
    assert_one_vector_per_chunk(callback, payload)
    assert_same_vectors(
        [e["embedding"] for e in callback["embeddings"]], await python_vectors(stub, SENTENCES[:3])
    )
    assert await redis.llen(CALLBACK_QUEUE) == 0


async def test_node_embed_matches_the_python_client(
    server: EmbeddingServer, stub: pb_grpc.EmbeddingServiceAsyncStub
) -> None:
    texts = SENTENCES[:4]
    result = await node_call(server, "Embed", {"inputs": texts})
    assert result.returncode == 0, result
    reply = result.json()
    assert reply["dimensions"] == DIMENSIONS and reply["model"]
    assert [e["index"] for e in reply["embeddings"]] == [0, 1, 2, 3]
    assert all(len(e["values"]) == DIMENSIONS for e in reply["embeddings"])
    assert reply["usage"]["prompt_tokens"] > 0
    assert_same_vectors(
        [e["values"] for e in reply["embeddings"]], await python_vectors(stub, texts)
    )


async def test_node_invalid_request_is_invalid_argument_naming_the_field(
    server: EmbeddingServer, stub: pb_grpc.EmbeddingServiceAsyncStub
) -> None:
    payload = seed_payload(SENTENCES[:1])
    payload["chunks"] = []
    result = await node_call(server, "GenerateEmbeddings", payload)
    assert result.returncode == 1, result
    error = result.json()
    assert error["code"] == 3  # INVALID_ARGUMENT
    assert "chunks" in error["details"]


async def test_buf_curl_embed_through_reflection(
    server: EmbeddingServer, stub: pb_grpc.EmbeddingServiceAsyncStub
) -> None:
    texts = SENTENCES[:2]
    result = await buf_curl(server, "Embed", {"inputs": texts})
    assert result.returncode == 0, result
    reply = result.json()
    # buf curl speaks the protobuf JSON mapping: lowerCamelCase names, zeros omitted.
    assert reply["dimensions"] == DIMENSIONS
    assert reply["usage"]["promptTokens"] > 0 and reply["usage"]["totalTokens"] > 0
    assert [e.get("index", 0) for e in reply["embeddings"]] == [0, 1]
    assert_same_vectors(
        [e["values"] for e in reply["embeddings"]], await python_vectors(stub, texts)
    )


async def test_buf_curl_generate_embeddings_through_reflection_leads_to_a_callback(
    server: EmbeddingServer,
    stub: pb_grpc.EmbeddingServiceAsyncStub,
    redis: aioredis.Redis,
    worker: EmbeddingWorker,
) -> None:
    payload = seed_payload(SENTENCES[3:5], task_id="task-buf")
    result = await buf_curl(server, "GenerateEmbeddings", payload)
    assert result.returncode == 0, result
    reply = result.json()
    assert set(reply) == {"jobId", "acceptedTime", "acceptedAt", "status", "taskId", "chunkCount"}
    assert reply["taskId"] == "task-buf" and reply["chunkCount"] == 2

    (callback,) = await pop_callbacks(redis, 1)
    assert callback["job_id"] == reply["jobId"] and callback["task_id"] == "task-buf"
    assert_one_vector_per_chunk(callback, payload)


async def test_buf_curl_invalid_request_is_invalid_argument(
    server: EmbeddingServer, stub: pb_grpc.EmbeddingServiceAsyncStub
) -> None:
    result = await buf_curl(server, "Embed", {"inputs": []})
    assert result.returncode != 0, result
    # Exit code: the gRPC code shifted left by three bits; the error is JSON on stderr.
    assert result.returncode == 3 << 3, result
    error = json.loads(result.stderr)
    assert error["code"] == "invalid_argument" and "inputs" in error["message"]
    (detail,) = error["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    raw = detail["value"].replace("-", "+").replace("_", "/")
    bad_request = error_details_pb2.BadRequest.FromString(
        base64.b64decode(raw + "=" * (-len(raw) % 4))
    )
    assert [v.field for v in bad_request.field_violations] == ["inputs"]
