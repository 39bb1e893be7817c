"""The Embedding Service's commands.

    python -m embedding serve                      the gRPC server
    python -m embedding worker                     one embedding worker
    python -m embedding dead-letters [--json]      list the jobs given up on
    python -m embedding redrive ENTRY_ID ... | --all
                                                   put them back on the job stream

Settings come from the environment (REDIS_URL, EMBEDDING_KEY_PREFIX, ...; README.md).
`redrive` exits 1 if any entry named was not re-driven (gone, or an unreadable INVALID_JOB
entry) and `dead-letters`/`redrive` exit 1 if Redis cannot be reached; bad arguments or
settings exit 2.
"""

from __future__ import annotations

import os

from embedpipe.grpc_engine import GRPC_EXPERIMENTS

os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)  # before gRPC loads

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from embedding import dead_letters, dead_letters_cli
from embedding.keys import EmbeddingKeys
from embedding.settings import EmbeddingSettings
from embedpipe.envconfig import settings_or_exit
from embedpipe.logs import configure_logging
from embedpipe.metrics import ProcessMetrics, serving_metrics
from embedpipe.redis_conn import connect
from embedpipe.signals import stop_on_signals
from embedpipe.tracing import traced_process

log = logging.getLogger("embedding")


async def run_worker(settings: EmbeddingSettings) -> None:
    """Run one worker until SIGTERM or SIGINT; the batch in hand is finished first."""
    from embedding.providers.registry import ProviderRegistry
    from embedding.worker import EmbeddingWorker

    registry = ProviderRegistry.from_settings(settings)
    redis = connect(settings.redis_url, longest_block_s=settings.worker.block_ms / 1000)
    metrics = ProcessMetrics()
    try:
        # Served while the model loads too (seconds: it times two precisions), so a scrape
        # right after the stack is up finds every worker.
        async with serving_metrics(metrics, settings.metrics):
            await registry.load_all()
            stop = stop_on_signals()
            await EmbeddingWorker(settings, registry, redis, metrics).run(stop)
    finally:
        await registry.close_all()
        await redis.aclose()


async def run_on_redis(
    settings: EmbeddingSettings,
    command: Callable[[aioredis.Redis, EmbeddingKeys], Awaitable[int]],
) -> int:
    """Run a one-shot command against Redis; an unreachable Redis is a one-line error."""
    redis = connect(settings.redis_url, retries=2)
    try:
        return await command(redis, EmbeddingKeys(settings.key_prefix))
    except RedisError as exc:
        print(f"error: Redis (REDIS_URL) failed: {exc}", file=sys.stderr)
        return dead_letters_cli.EXIT_FAILED
    finally:
        await redis.aclose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m embedding",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the gRPC server")
    commands.add_parser("worker", help="run one embedding worker")
    listing = commands.add_parser(
        "dead-letters",
        help="list the dead-letter stream",
        description="List the jobs given up on: entry id, time, job id, tenant, task, "
        "reason and deliveries, oldest first.",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list instead")
    redrive = commands.add_parser(
        "redrive",
        help="put dead-lettered jobs back on the job stream",
        description="Put dead-lettered jobs back on the job stream as fresh jobs (new job "
        "ids), removing them from the dead-letter stream in the same atomic step. Entries "
        "with reason INVALID_JOB were never readable jobs and cannot be re-driven.",
    )
    redrive.add_argument(
        "entry_ids", nargs="*", metavar="ENTRY_ID", help="dead-letter entry ids to re-drive"
    )
    redrive.add_argument("--all", action="store_true", help="re-drive every entry")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "redrive":
        if bool(args.entry_ids) == args.all:
            parser.error("redrive: name ENTRY_IDs or give --all (not both)")
        try:
            for entry_id in args.entry_ids:
                dead_letters.check_entry_id(entry_id)
        except dead_letters.BadEntryIdError as exc:
            parser.error(f"redrive: {exc}")
    settings = settings_or_exit(EmbeddingSettings.from_env)
    configure_logging(settings.log_level)
    if args.command == "dead-letters":
        as_json: bool = args.json
        return asyncio.run(
            run_on_redis(
                settings,
                lambda redis, keys: dead_letters_cli.list_command(redis, keys, as_json=as_json),
            )
        )
    if args.command == "redrive":
        entry_ids: list[str] = args.entry_ids
        every: bool = args.all
        return asyncio.run(
            run_on_redis(
                settings,
                lambda redis, keys: dead_letters_cli.redrive_command(
                    redis, keys, entry_ids, every=every
                ),
            )
        )
    if args.command == "serve":
        # Imported here: the one-shot commands need neither gRPC nor the models.
        from embedding.server import serve

        with traced_process("embedpipe-embedding-server"):
            asyncio.run(serve(settings))
    else:
        with traced_process("embedpipe-embedding-worker"):
            asyncio.run(run_worker(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
