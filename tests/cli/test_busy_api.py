"""The CLI against an API that says "not now": right after `embedpipe up` the embedding
server is still loading its model and the ingestion API answers 503 with Retry-After.

The commands wait as asked, saying so on stderr, and go on once the API can answer; a
client whose wait runs out fails with the API's own message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from embedding.providers.base import EmbedOutput
from embedding.providers.local import LocalOnnxProvider
from embedding.providers.registry import ProviderRegistry
from embedding.server import EmbeddingServer
from embedding.settings import EmbeddingSettings
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.cli import commands
from embedpipe.cli.api import ApiClient, ApiError
from embedpipe.retry import RetryPolicy
from tests.support.ingestion_calls import HANDBOOK
from tests.support.services import started_server
from tests.support.tenants import TENANT_KEYS

KEY = TENANT_KEYS["tenant-a"]


class LoadingModel:
    """The session's bundled model behind a server that has just started: it says it is
    still loading until the test sets `loaded` (the test is about the CLI, not the model).
    `asked` is set once the server has asked whether it is loaded."""

    def __init__(self, model: LocalOnnxProvider) -> None:
        self.model = model
        self.spec = model.spec
        self.loaded = asyncio.Event()
        self.asked = asyncio.Event()

    @property
    def dimensions(self) -> int:
        return self.model.dimensions

    @property
    def max_batch_size(self) -> int:
        return self.model.max_batch_size

    async def load(self) -> None:
        await self.loaded.wait()

    def healthy(self) -> bool:
        self.asked.set()
        return self.loaded.is_set()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.model.count_tokens(texts)

    def token_bound(self, text: str) -> int | None:
        return self.model.token_bound(text)

    async def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> EmbedOutput:
        return await self.model.embed(texts, dimensions=dimensions)

    async def close(self) -> None:
        """The session's model stays loaded for the other tests."""


@pytest.fixture
def loading_model(local_provider: LocalOnnxProvider) -> LoadingModel:
    return LoadingModel(local_provider)


@pytest.fixture
async def auth_server(
    auth_settings: EmbeddingSettings, loading_model: LoadingModel, redis: aioredis.Redis
) -> AsyncIterator[EmbeddingServer]:
    """The API chain's embedding server, started but not waited for: it is loading."""
    registry = ProviderRegistry({DEFAULT_MODEL: loading_model}, DEFAULT_MODEL)
    async with started_server(auth_settings, registry) as server:
        yield server


async def test_a_client_gives_up_when_its_wait_runs_out(
    ingestion_api: str, loading_model: LoadingModel
) -> None:
    waits = RetryPolicy(max_attempts=None, base_s=0.1, max_s=0.2, give_up_after_s=2.5)
    async with aiohttp.ClientSession() as session:
        client = ApiClient(ingestion_api, KEY, session, busy_retry=waits)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ApiError) as caught:
            await client.call("POST", "/collections", json={"collection_id": "kb"})
    waited = asyncio.get_running_loop().time() - started
    assert caught.value.status == 503 and caught.value.retry_after_s == 1
    assert "still loading" in caught.value.message
    # The API asked for 1 s between tries: two waits fit in the 2.5 s, a third would not.
    assert 1.9 < waited < 3.0, waited


async def test_ingest_waits_for_the_model_then_completes(
    ingestion_api: str,
    ingestion_worker: None,
    loading_model: LoadingModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "handbook.md").write_text(HANDBOOK)
    args = ["--url", ingestion_api, "--api-key", KEY, "ingest", str(tmp_path), "--collection", "kb"]
    cli = asyncio.create_task(asyncio.to_thread(commands.main, args))
    await asyncio.wait_for(loading_model.asked.wait(), 30)  # the CLI is creating "kb"
    await asyncio.sleep(1.5)  # and has been told to wait at least once
    loading_model.loaded.set()
    code = await asyncio.wait_for(cli, 60)
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert "collection 'kb' did not exist; created it" in out
    assert "1 completed, 0 unchanged, 0 failed, 0 skipped" in out
    waits = err.strip().splitlines()
    assert waits, "the CLI never said it was waiting"
    for line in waits:
        assert line.startswith("embedpipe: the API answered 503 UNAVAILABLE: "), line
        assert "still loading" in line and line.endswith(" (trying again in 1.0 s)"), line
