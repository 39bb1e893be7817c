"""`python -m embedding serve` runs the gRPC server; `python -m embedding worker` a worker."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from embedding.providers.registry import ProviderRegistry
from embedding.server import serve
from embedding.settings import EmbeddingSettings
from embedding.worker import EmbeddingWorker
from embedpipe.envconfig import settings_or_exit
from embedpipe.logs import configure_logging
from embedpipe.redis_conn import connect

log = logging.getLogger("embedding")


async def run_worker(settings: EmbeddingSettings) -> None:
    """Run one worker until SIGTERM or SIGINT; the batch in hand is finished first."""
    registry = ProviderRegistry.from_settings(settings)
    await registry.load_all()
    redis = connect(settings.redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await EmbeddingWorker(settings, registry, redis).run(stop)
    finally:
        await registry.close_all()
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embedding", description=__doc__)
    parser.add_argument("command", choices=["serve", "worker"])
    args = parser.parse_args(argv)
    settings = settings_or_exit(EmbeddingSettings.from_env)
    configure_logging(settings.log_level)
    asyncio.run(serve(settings) if args.command == "serve" else run_worker(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
