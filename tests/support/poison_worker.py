"""A real embedding worker whose model crashes the process on a poison text.

Run as `python -m tests.support.poison_worker` with the usual EMBEDDING_* / REDIS_URL variables.
The provider is the only stand-in: everything around it (stream, claims, dead-letter,
callbacks) is the production worker.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from embedding.providers.base import EmbedOutput
from embedding.providers.local import LocalOnnxProvider
from embedding.providers.registry import ProviderRegistry
from embedding.settings import EmbeddingSettings
from embedding.worker import EmbeddingWorker
from embedpipe.logs import configure_logging
from embedpipe.redis_conn import connect

POISON = "POISON"


class CrashOnPoison(LocalOnnxProvider):
    """The local model, except that a text containing POISON kills the process."""

    async def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> EmbedOutput:
        if any(POISON in text for text in texts):
            os._exit(137)
        return await super().embed(texts, dimensions=dimensions)


async def main() -> None:
    settings = EmbeddingSettings.from_env()
    configure_logging(settings.log_level)
    spec = settings.models[0]
    registry = ProviderRegistry({spec.name: CrashOnPoison(spec)}, spec.name)
    await registry.load_all()
    redis = connect(settings.redis_url)
    await EmbeddingWorker(settings, registry, redis).run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main())
