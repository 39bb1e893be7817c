"""`python -m ingestion api` runs the HTTP API; `python -m ingestion worker` a worker."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg
from aiohttp import web

from embedpipe.envconfig import settings_or_exit
from embedpipe.heap import freeze_heap_once_started
from embedpipe.logs import configure_logging
from embedpipe.signals import stop_on_signals
from embedpipe.tracing import traced_process
from ingestion.api import create_app
from ingestion.db import DATABASE_REFUSED
from ingestion.settings import IngestionSettings
from ingestion.worker import run_worker

log = logging.getLogger("ingestion")

#: At start, what no wait cures: e.g. a bad option, password or database name in
#: DATABASE_URL, or a server without pgvector.
_CANNOT_USE_DATABASE: tuple[type[Exception], ...] = (*DATABASE_REFUSED, asyncpg.PostgresError)


async def _worker(settings: IngestionSettings) -> None:
    await run_worker(settings, stop_on_signals())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingestion", description=__doc__)
    parser.add_argument("command", choices=["api", "worker"])
    args = parser.parse_args(argv)
    settings = settings_or_exit(IngestionSettings.from_env)
    configure_logging(settings.log_level)
    try:
        if args.command == "api":
            log.info("ingestion api starting host=%s port=%d", settings.host, settings.port)
            # Tracing first: create_app adds its tracing middleware only when tracing is on.
            with traced_process("embedpipe-ingestion-api"):
                web.run_app(
                    freeze_heap_once_started(create_app(settings)),
                    host=settings.host, port=settings.port,
                    access_log=None, print=None, shutdown_timeout=10,
                )  # fmt: skip
        else:
            with traced_process("embedpipe-ingestion-worker"):
                asyncio.run(_worker(settings))
    except _CANNOT_USE_DATABASE as exc:
        log.error("cannot use the database of DATABASE_URL: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
