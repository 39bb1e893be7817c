"""The `embedpipe` commands: parsing the command line and running the command.

    embedpipe up                                     run the whole stack (make up)
    embedpipe --version
    embedpipe ingest PATH... --collection NAME       upload files and folders, live progress
    embedpipe search "query" --collection NAME       ranked chunks
    embedpipe status TASK_ID | collections | documents --collection NAME
    embedpipe reembed --collection NAME --model MODEL  another model, no downtime
    embedpipe cancel TASK_ID                         stop an upload or a re-embed

Global options (before or after the command): `--url` (EMBEDPIPE_URL, else
http://127.0.0.1:8090), `--api-key` (EMBEDPIPE_API_KEY, else the dev key `make up` keeps in
$EMBEDPIPE_DATA_DIR/dev-api-key), `--json`. Exit codes: 0 ok, 1 some file failed to ingest,
2 an error (API unreachable, key refused, not found, bad arguments), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version

from embedpipe.cli import changes, views
from embedpipe.cli.api import CliError, default_api_key, default_url, open_client
from embedpipe.cli.ingest import IngestOptions, run_ingest

INTERRUPTED = 130
DEFAULT_CONCURRENCY = 4


def _global_options(with_defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes. Subcommands get them without defaults, so a value
    given before the command is not overwritten by a default after it."""
    parser = argparse.ArgumentParser(add_help=False)
    default = None if with_defaults else argparse.SUPPRESS
    parser.add_argument(
        "--url",
        default=default,
        help="the ingestion API (default: $EMBEDPIPE_URL or http://127.0.0.1:8090)",
    )
    parser.add_argument(
        "--api-key",
        default=default,
        help="API key (default: $EMBEDPIPE_API_KEY or $EMBEDPIPE_DATA_DIR/dev-api-key)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if with_defaults else argparse.SUPPRESS,
        help="machine-readable JSON output",
    )
    return parser


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = [_global_options(with_defaults=False)]
    commands.add_parser("up", parents=common, help="run the whole stack (as make up does)")
    ingest = commands.add_parser("ingest", parents=common, help="upload files and folders")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (recursive)")
    ingest.add_argument("--collection", required=True, help="the collection to add to")
    ingest.add_argument("--create", action="store_true", help="create the collection first")
    ingest.add_argument(
        "--concurrency", type=_positive, default=DEFAULT_CONCURRENCY, help="parallel uploads"
    )
    search = commands.add_parser("search", parents=common, help="search a collection")
    search.add_argument("query")
    search.add_argument("--collection", required=True)
    search.add_argument("--top-k", type=_positive, default=5, help="results (default 5)")
    search.add_argument(
        "--mode",
        choices=["vector", "keyword", "hybrid"],
        help="nearest in meaning, holding the words, or both (default: the server's, hybrid)",
    )
    status = commands.add_parser("status", parents=common, help="a task's status")
    status.add_argument("task_id", metavar="TASK_ID")
    commands.add_parser("collections", parents=common, help="list collections")
    documents = commands.add_parser("documents", parents=common, help="list a collection's docs")
    documents.add_argument("--collection", required=True)
    reembed = commands.add_parser(
        "reembed", parents=common, help="embed a collection again with another model"
    )
    reembed.add_argument("--collection", required=True)
    reembed.add_argument("--model", required=True, help="a model the embedding server serves")
    cancel = commands.add_parser("cancel", parents=common, help="cancel an unfinished task")
    cancel.add_argument("task_id", metavar="TASK_ID")


def version() -> str:
    """The installed package's version."""
    try:
        return installed_version("embedpipe")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedpipe",
        description="Ingest documents into embedpipe and search them.",
        parents=[_global_options(with_defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"embedpipe {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_commands(commands)
    return parser


async def _run(args: argparse.Namespace) -> int:
    """Run an API command with a client on the chosen URL and key."""
    url = args.url or default_url(os.environ)
    api_key = args.api_key or default_api_key(os.environ)
    out = sys.stdout
    async with open_client(url, api_key) as client:
        if args.command == "ingest":
            options = IngestOptions(
                args.paths, args.collection, args.create, args.concurrency, args.json
            )
            return await run_ingest(client, options, out)
        if args.command == "search":
            return await views.search(
                client, args.collection, args.query, args.top_k, args.mode, args.json, out
            )
        if args.command == "status":
            return await views.status(client, args.task_id, args.json, out)
        if args.command == "collections":
            return await views.collections(client, args.json, out)
        if args.command == "reembed":
            return await changes.reembed(client, args.collection, args.model, args.json, out)
        if args.command == "cancel":
            return await changes.cancel(client, args.task_id, args.json, out)
        return await views.documents(client, args.collection, args.json, out)


def _up() -> int:
    from embedpipe import stack  # the stack's imports are heavier than the client's

    return stack.main()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: the process's), run the command, return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            return _up()
        return asyncio.run(_run(args))
    except CliError as exc:
        sys.stdout.flush()
        print(f"embedpipe: error: {exc.message}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return INTERRUPTED
