"""Re-embedding a collection with another model, without downtime: search answers with
the old model until the switch and with the new one after, never an error, never a mix;
documents uploaded meanwhile end up in the new model; a worker SIGKILLed mid re-embed
loses nothing; a cancelled or failed re-embed leaves the collection as it was.

The old model is the bundled local one; the new one an OpenAI-compatible stand-in whose
vectors are a function of the text (standin_vector), so every similarity a search
reports can be checked against the model the response names.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np
import pytest

from embedding.providers.local import LocalOnnxProvider
from embedding.providers.openai_api import OpenAIProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import EmbeddingServer
from embedding.settings import EmbeddingSettings
from embedding.worker import EmbeddingWorker
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.cli import commands
from ingestion.settings import IngestionSettings
from tests.support.ingestion_calls import COLLECTIONS, upload_text, wait_task, wait_until
from tests.support.openai_standin import (
    MODEL,
    REJECT_MARKER,
    OpenAIStandin,
    loaded_provider,
    running_standin,
    standin_vector,
)
from tests.support.processes import Child, Children, service_env, wait_ready
from tests.support.services import running_worker, serving_models
from tests.support.tenants import TENANT_KEYS, bearer

TOPICS = ["owls", "tides", "volcanoes", "glaciers", "bees", "comets", "coral", "deserts"]
QUERIES = ["night hunting birds", "ocean water levels", "melting ice", "pollinating insects"]
TOP_K = 5
#: Between one search and the next of a test's search load (at most 50 a second).
SEARCH_PAUSE_S = 0.02


def document(n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    return "\n\n".join(
        f"Note {n}.{p} on {topic}: observation {p} of {topic} recorded at site {n * 7 + p}."
        for p in range(3)
    )


@pytest.fixture
async def standin() -> AsyncIterator[OpenAIStandin]:
    async with running_standin() as running:
        yield running


@pytest.fixture
async def new_model(standin: OpenAIStandin) -> AsyncIterator[OpenAIProvider]:
    async with loaded_provider(standin) as provider:
        yield provider


@pytest.fixture
def registry(local_provider: LocalOnnxProvider, new_model: OpenAIProvider) -> ProviderRegistry:
    return ProviderRegistry({DEFAULT_MODEL: local_provider, MODEL: new_model}, DEFAULT_MODEL)


# The embedding server and worker of the usual test stack, serving both models.
@pytest.fixture
async def auth_server(
    auth_settings: EmbeddingSettings, registry: ProviderRegistry, redis: object
) -> AsyncIterator[EmbeddingServer]:
    async with serving_models(auth_settings, registry) as (server, _):
        yield server


@pytest.fixture
async def worker(
    settings: EmbeddingSettings, registry: ProviderRegistry, redis: object
) -> AsyncIterator[EmbeddingWorker]:
    async with running_worker(settings, registry) as running:
        yield running


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url, json=body, headers=bearer("tenant-a")) as r:
        return r.status, await r.json()


async def ingested_collection(
    http: aiohttp.ClientSession, api: str, name: str, documents: int
) -> None:
    """A collection of small chunks on the local model, every document searchable."""
    body = {"collection_id": name, "chunk_tokens": 16, "overlap_tokens": 0}
    status, created = await call(http, "POST", api + COLLECTIONS, body)
    assert status == 201, created
    tasks = [
        (await upload_text(http, api, name, f"doc-{n}", document(n)))["task_id"]
        for n in range(documents)
    ]
    for task_id in tasks:
        assert (await wait_task(http, api, task_id))["status"] == "completed"


async def reembed(http: aiohttp.ClientSession, api: str, name: str) -> dict[str, Any]:
    status, task = await call(http, "POST", f"{api}{COLLECTIONS}/{name}/reembed", {"model": MODEL})
    assert status == 202, task
    assert task["kind"] == "reembed" and task["model"] == MODEL
    return task


def fields_named(answer: dict[str, Any]) -> list[str]:
    """The fields an error answer names as bad."""
    return [
        violation["field"]
        for detail in answer["error"].get("details", [])
        for violation in detail.get("fieldViolations", [])
    ]


async def stored_generations(database_url: str, name: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT generation, vector_dims(embedding) AS size, count(*) FROM chunks"
            " WHERE collection_id = $1 AND live GROUP BY 1, 2 ORDER BY 1",
            name,
        )
    finally:
        await connection.close()


Answers = list[tuple[str, str, list[dict[str, Any]]]]


async def check_answers(answers: Answers, local_provider: LocalOnnxProvider) -> None:
    """Old model, then new, never back; each answer complete, its similarities those of
    the model it names."""
    models = [model for _, model, _ in answers]
    switch = models.index(MODEL)
    assert switch > 0 and set(models[:switch]) == {DEFAULT_MODEL}
    assert set(models[switch:]) == {MODEL}, "a search went back to the old model"
    for query, model, results in answers:
        assert len(results) == TOP_K
        similarities = [r["similarity"] for r in results if "similarity" in r]
        texts = [r["text"] for r in results if "similarity" in r]
        assert similarities, results
        if model == MODEL:
            expected = [float(standin_vector(t) @ standin_vector(query)) for t in texts]
        else:
            output = await local_provider.embed([query, *texts])
            vectors = output.vectors / np.linalg.norm(output.vectors, axis=1, keepdims=True)
            expected = [float(v @ vectors[0]) for v in vectors[1:]]
        assert np.allclose(similarities, expected, atol=2e-3), (model, query)


async def test_search_answers_with_the_old_model_until_the_switch_then_the_new_never_a_mix(
    ingestion_api: str,
    ingestion_worker: None,
    http: aiohttp.ClientSession,
    database_url: str,
    standin: OpenAIStandin,
    local_provider: LocalOnnxProvider,
) -> None:
    await ingested_collection(http, ingestion_api, "notes", 16)
    _, before = await call(http, "GET", f"{ingestion_api}{COLLECTIONS}/notes")
    assert before["model"] == DEFAULT_MODEL and before["dimensions"] == 384
    answers: Answers = []
    stop = asyncio.Event()

    async def searching() -> None:
        n = 0
        while not stop.is_set():
            query, mode = QUERIES[n % len(QUERIES)], ("SEARCH_MODE_VECTOR", "SEARCH_MODE_HYBRID")
            body = {"query": query, "top_k": TOP_K, "mode": mode[n % 2]}
            status, found = await call(http, "POST", f"{ingestion_api}{COLLECTIONS}/notes/search",
                                       body)  # fmt: skip
            assert status == 200, found  # never an error, before, during or after
            answers.append((query, found["model"], found["results"]))
            n += 1
            # A steady load under the tenant's 100 calls/s: unpaced, a fast machine went over
            # it (429) with this test's own task polls.
            await asyncio.sleep(SEARCH_PAUSE_S)

    load = asyncio.create_task(searching())
    # The new model's first answers come late: searches run on the old one meanwhile.
    standin.hang_next(3, answer_after_s=1.0)
    task = await reembed(http, ingestion_api, "notes")
    assert task["document_id"] == ""
    _, running = await call(http, "GET", f"{ingestion_api}{COLLECTIONS}/notes")
    assert running["reembed_task_id"] == task["task_id"] and running["model"] == DEFAULT_MODEL
    # Uploaded mid re-embed: embedded with the old model now, and the new one by the switch.
    late = await upload_text(http, ingestion_api, "notes", "late", "Late note: lava flows.")
    done = await wait_task(http, ingestion_api, task["task_id"])
    assert done["status"] == "completed", done
    assert (await wait_task(http, ingestion_api, late["task_id"]))["status"] == "completed"
    await asyncio.sleep(0.3)  # a few searches after
    stop.set()
    await load

    await check_answers(answers, local_provider)

    _, after = await call(http, "GET", f"{ingestion_api}{COLLECTIONS}/notes")
    assert after["model"] == MODEL and after["dimensions"] == 64
    assert after["reembed_task_id"] is None
    rows = await stored_generations(database_url, "notes")
    # One generation left: the old vectors went, every chunk (the late one's too) is new.
    assert [(r["generation"], r["size"]) for r in rows] == [(1, 64)]
    _, listed = await call(http, "GET", f"{ingestion_api}{COLLECTIONS}/notes/documents")
    assert len(listed["documents"]) == 17
    assert (
        rows[0]["count"]
        == after["chunk_count"]
        == sum(d["chunk_count"] for d in listed["documents"])
    )
    _, found = await call(
        http, "POST", f"{ingestion_api}{COLLECTIONS}/notes/search",
        {"query": "lava", "mode": "SEARCH_MODE_KEYWORD"},
    )  # fmt: skip
    assert [r["document_id"] for r in found["results"]] == ["late"]


async def test_a_cancelled_or_failed_reembed_leaves_the_collection_serving_its_model(
    ingestion_api: str,
    ingestion_worker: None,
    http: aiohttp.ClientSession,
    database_url: str,
    standin: OpenAIStandin,
) -> None:
    await ingested_collection(http, ingestion_api, "kept", 4)
    search = f"{ingestion_api}{COLLECTIONS}/kept/search"
    _, before = await call(http, "POST", search, {"query": "owls", "mode": "SEARCH_MODE_VECTOR"})

    async def unchanged() -> None:
        _, collection = await call(http, "GET", f"{ingestion_api}{COLLECTIONS}/kept")
        assert collection["model"] == DEFAULT_MODEL and collection["reembed_task_id"] is None
        _, now = await call(http, "POST", search, {"query": "owls", "mode": "SEARCH_MODE_VECTOR"})
        assert now == before  # the same model, the same vectors, the same answer
        assert [r["generation"] for r in await stored_generations(database_url, "kept")] == [0]

    # Failed: the new model refuses one chunk for good (the old one embedded it).
    poison = await upload_text(http, ingestion_api, "kept", "poison", f"Odd: {REJECT_MARKER}")
    assert (await wait_task(http, ingestion_api, poison["task_id"]))["status"] == "completed"
    _, before = await call(http, "POST", search, {"query": "owls", "mode": "SEARCH_MODE_VECTOR"})
    first = await reembed(http, ingestion_api, "kept")
    failed = await wait_task(http, ingestion_api, first["task_id"])
    assert failed["status"] == "failed" and failed["error_code"], failed
    await unchanged()

    # Cancelled while the new model's vectors are on their way.
    async with http.delete(
        f"{ingestion_api}{COLLECTIONS}/kept/documents/poison", headers=bearer("tenant-a")
    ) as r:
        assert r.status == 204
    _, before = await call(http, "POST", search, {"query": "owls", "mode": "SEARCH_MODE_VECTOR"})
    standin.hang_next(10, answer_after_s=3.0)
    task = await reembed(http, ingestion_api, "kept")
    status, again = await call(
        http, "POST", f"{ingestion_api}{COLLECTIONS}/kept/reembed", {"model": MODEL}
    )
    assert status == 409 and fields_named(again) == ["collection_id"], again
    await wait_until(lambda: _has_copies(database_url, "kept"))
    cancel = f"{ingestion_api}/api/v1/tasks/{task['task_id']}/cancel"
    status, cancelled = await call(http, "POST", cancel)
    assert status == 200 and cancelled["status"] == "cancelled", cancelled
    status, twice = await call(http, "POST", cancel)
    assert status == 409 and fields_named(twice) == ["task_id"], twice
    await unchanged()
    await asyncio.sleep(3.5)  # the late vectors come, for a cancelled task: dropped
    await unchanged()


async def _has_copies(database_url: str, name: str) -> bool:
    return len(await stored_generations(database_url, name)) > 1


async def test_a_reembed_names_the_field_it_refuses(
    ingestion_api: str, ingestion_worker: None, http: aiohttp.ClientSession
) -> None:
    await ingested_collection(http, ingestion_api, "mine", 1)
    url = f"{ingestion_api}{COLLECTIONS}/mine/reembed"
    refusals: list[tuple[dict[str, Any], str]] = [
        ({}, "model"),
        ({"model": DEFAULT_MODEL}, "model"),  # its own
        ({"model": "no-such-model"}, "model"),
        ({"model": 7}, "model"),
    ]
    for body, field in refusals:
        status, refused = await call(http, "POST", url, body)
        assert status == 400 and fields_named(refused) == [field], refused
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/mine/reembed", json={"model": MODEL},
        headers=bearer("tenant-b"),
    ) as r:  # fmt: skip
        assert r.status == 404  # another tenant's collection is not there
    status, missing = await call(http, "POST", f"{ingestion_api}/api/v1/tasks/nope/cancel")
    assert status == 404, missing


# --- a worker killed mid re-embed -------------------------------------------------------


def child_worker(children: Children, settings: IngestionSettings, name: str) -> Child:
    """An ingestion worker process (jobs and callbacks), consuming when this returns."""
    env = service_env(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        EMBEDDING_SERVICE_URL=settings.embedding_service_url,
        EMBEDDING_GRPC_TARGET=settings.embedding_grpc_target,
        INGESTION_SERVICE_KEY=TENANT_KEYS["*"],
        INGESTION_REQUEST_CHUNKS="4",
        INGESTION_CLAIM_IDLE_MS="1000",
        INGESTION_WORKER_NAME=name,
    )
    child = children.start(name, ["-m", "ingestion", "worker"], env)
    wait_ready(child, lambda: b"callback consumer started" in child.log.read_bytes(), "consuming")
    return child


async def test_an_ingestion_worker_killed_mid_reembed_loses_nothing(
    ingestion_api: str,
    ingestion_settings: IngestionSettings,
    worker: EmbeddingWorker,
    http: aiohttp.ClientSession,
    database_url: str,
    standin: OpenAIStandin,
    tmp_path: Path,
) -> None:
    children = Children(tmp_path)
    try:
        doomed = child_worker(children, ingestion_settings, "doomed")
        await ingested_collection(http, ingestion_api, "big", 24)
        # The new model slow at first: the kill comes while vectors are on their way.
        standin.hang_next(4, answer_after_s=1.5)
        task = await reembed(http, ingestion_api, "big")

        async def partly_embedded() -> bool:
            _, now = await call(http, "GET", f"{ingestion_api}/api/v1/tasks/{task['task_id']}")
            return bool(0 < now["chunks_embedded"] < now["chunks_total"])

        await wait_until(partly_embedded)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait()
        child_worker(children, ingestion_settings, "successor")
        done = await wait_task(http, ingestion_api, task["task_id"])
        assert done["status"] == "completed", done
    finally:
        children.stop_all()
    _, collection = await call(http, "GET", f"{ingestion_api}{COLLECTIONS}/big")
    assert collection["model"] == MODEL
    rows = await stored_generations(database_url, "big")
    assert [(r["generation"], r["size"]) for r in rows] == [(1, 64)]
    assert rows[0]["count"] == collection["chunk_count"] == done["chunks_total"]
    connection = await asyncpg.connect(database_url)
    try:
        # Every chunk of the new generation holds the new model's vector of its own text.
        stored = await connection.fetch(
            "SELECT text, embedding::real[] AS vector FROM chunks WHERE collection_id = 'big'"
        )
    finally:
        await connection.close()
    for row in stored:
        assert np.allclose(row["vector"], standin_vector(row["text"]), atol=1e-6)


async def test_the_cli_reembeds_a_collection_and_follows_it_to_the_switch(
    ingestion_api: str,
    ingestion_worker: None,
    http: aiohttp.ClientSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await ingested_collection(http, ingestion_api, "cli", 2)
    common = ["--url", ingestion_api, "--api-key", TENANT_KEYS["tenant-a"]]
    code = await asyncio.to_thread(
        commands.main, ["reembed", "--collection", "cli", "--model", MODEL, *common]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"switched: 'cli' is searched with {MODEL} now" in out
    _, collection = await call(http, "GET", f"{ingestion_api}{COLLECTIONS}/cli")
    assert collection["model"] == MODEL
    task_id = out.split("(task ")[1].split(")")[0]
    code = await asyncio.to_thread(commands.main, ["cancel", task_id, *common])
    captured = capsys.readouterr()
    assert code == 2 and "the task has ended (completed)" in captured.err, captured


async def test_a_model_that_can_shorten_its_vectors_gives_the_size_a_collection_asks(
    ingestion_api: str,
    ingestion_worker: None,
    http: aiohttp.ClientSession,
    database_url: str,
) -> None:
    url = ingestion_api + COLLECTIONS
    for body in [
        {"collection_id": "fixed", "dimensions": 100},  # the local model cannot shorten
        {"collection_id": "long", "model": MODEL, "dimensions": 65},  # over its own 64
        {"collection_id": "none", "model": MODEL, "dimensions": 0},
    ]:
        status, refused = await call(http, "POST", url, body)
        assert status == 400 and fields_named(refused) == ["dimensions"], refused
    body = {"collection_id": "short", "model": MODEL, "dimensions": 16, "chunk_tokens": 16}
    status, created = await call(http, "POST", url, body)
    assert status == 201 and created["dimensions"] == 16, created
    accepted = await upload_text(http, ingestion_api, "short", "doc", document(1))
    assert (await wait_task(http, ingestion_api, accepted["task_id"]))["status"] == "completed"
    status, found = await call(
        http, "POST", f"{url}/short/search", {"query": "tides", "mode": "SEARCH_MODE_VECTOR"}
    )
    assert status == 200 and found["results"], found
    for result in found["results"]:
        expected = float(standin_vector(result["text"], 16) @ standin_vector("tides", 16))
        assert abs(result["similarity"] - expected) < 1e-4

    # A re-embed can ask for a size too.
    await ingested_collection(http, ingestion_api, "local", 2)
    status, task = await call(
        http, "POST", f"{url}/local/reembed", {"model": MODEL, "dimensions": 48}
    )
    assert status == 202, task
    assert (await wait_task(http, ingestion_api, task["task_id"]))["status"] == "completed"
    _, collection = await call(http, "GET", f"{url}/local")
    assert collection["model"] == MODEL and collection["dimensions"] == 48
    rows = await stored_generations(database_url, "local")
    assert [(r["generation"], r["size"]) for r in rows] == [(1, 48)]
