"""The generated SDKs against a live stack: each SDK's example program makes a collection,
streams a document in, follows its task over WatchTask to `completed`, finds the document
as the top hit, calls Embed, and with another tenant's key gets NOT_FOUND, as over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from embedding.server import EmbeddingServer
from ingestion.settings import IngestionSettings
from tests.support.ingestion_calls import COLLECTIONS, STATUSES
from tests.support.services import IngestionFronts, serving_ingestion_fronts
from tests.support.tenants import TENANT_KEYS, bearer

ROOT = Path(__file__).resolve().parents[2]
TYPESCRIPT = ROOT / "sdk/typescript"
RUBY = ROOT / "sdk/ruby"
TIMEOUT_S = 120


@pytest.fixture
async def fronts(
    ingestion_settings: IngestionSettings, ingestion_worker: None
) -> AsyncIterator[IngestionFronts]:
    async with serving_ingestion_fronts(ingestion_settings) as served:
        yield served


async def run(command: Sequence[str | Path], cwd: Path, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *map(str, command), cwd=cwd, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(TIMEOUT_S):
        out, err = await process.communicate()
    assert process.returncode == 0, f"{command}: {err.decode()}{out.decode()}"
    return out.decode()


def example_env(fronts: IngestionFronts, auth_server: EmbeddingServer, url: bool) -> dict[str, str]:
    scheme = "http://" if url else ""
    return {
        "EMBEDPIPE_INGESTION_GRPC": scheme + fronts.grpc_target,
        "EMBEDPIPE_EMBEDDING_GRPC": f"{scheme}127.0.0.1:{auth_server.port}",
        "EMBEDPIPE_API_KEY": TENANT_KEYS["tenant-a"],
        "EMBEDPIPE_OTHER_API_KEY": TENANT_KEYS["tenant-b"],
        "EMBEDPIPE_COLLECTION": "handbook",
    }


async def check_run(
    printed: str, fronts: IngestionFronts, http: aiohttp.ClientSession
) -> dict[str, Any]:
    """What an example printed: the story every SDK must tell, checked over HTTP too."""
    result: dict[str, Any] = json.loads(printed.strip().splitlines()[-1])
    statuses = result["statuses"]
    assert statuses[-1] == "completed", statuses
    assert statuses == sorted(set(statuses), key=STATUSES.index)
    assert result["topDocument"] == "handbook" and "vacation" in result["topText"]
    assert result["documentStatus"] == "completed"
    assert result["embeddingDimensions"] == 384
    assert result["otherTenant"] == dict.fromkeys(
        ("getCollection", "search", "watchTask"), "NOT_FOUND"
    )
    # The same as over HTTP: the document is there for its tenant, not for the other one.
    task = f"{fronts.url}/api/v1/tasks/{result['taskId']}"
    async with http.get(task, headers=bearer("tenant-a")) as r:
        assert (await r.json())["status"] == "completed"
    async with http.get(f"{fronts.url}{COLLECTIONS}/handbook", headers=bearer("tenant-b")) as r:
        assert r.status == 404
    return result


async def test_the_typescript_sdk_compiles_and_its_example_runs_the_whole_path(
    fronts: IngestionFronts,
    auth_server: EmbeddingServer,
    http: aiohttp.ClientSession,
) -> None:
    await run(["npm", "run", "--silent", "build"], TYPESCRIPT, {})  # tsc, strict
    printed = await run(
        ["node", "dist/examples/quickstart.js"], TYPESCRIPT, example_env(fronts, auth_server, True)
    )
    await check_run(printed, fronts, http)


async def test_the_ruby_sdk_example_runs_the_whole_path(
    fronts: IngestionFronts, auth_server: EmbeddingServer, http: aiohttp.ClientSession
) -> None:
    printed = await run(
        ["ruby", "-I", "lib", "examples/quickstart.rb"],
        RUBY,
        example_env(fronts, auth_server, False),
    )
    await check_run(printed, fronts, http)
