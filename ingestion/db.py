"""PostgreSQL + pgvector: the connection pool and migrations applied at start."""

from __future__ import annotations

import logging
import re
import ssl
from importlib import resources

import asyncpg
from asyncpg.exceptions import _base as asyncpg_client
from pgvector.asyncpg import register_vector

from embedpipe.retry import RetryPolicy, retrying

log = logging.getLogger(__name__)

_MIGRATIONS = resources.files("ingestion") / "migrations"
# Serialises migrations across replicas starting at once (an arbitrary, fixed number).
_MIGRATION_LOCK = 4_242_001

Pool = asyncpg.Pool
#: Until the database is up: a wait that grows from 0.5 s to 5 s.
START_RETRY = RetryPolicy(max_attempts=None, base_s=0.5, max_s=5.0)

#: Errors meaning "the database is not reachable right now": retry later, lose nothing.
#: A server going down refuses new sessions with 57P03 and ends open ones with 57P01/57P02
#: (asyncpg mostly reports those as a closed connection); a connection it drops while the
#: pool sets it up can leave asyncpg's protocol in a state it reports as an
#: InternalClientError ("cannot switch to state 12; another operation (2) is in
#: progress"), which dead-lettered a valid callback before. None is about the data.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)

#: asyncpg's own DataError (a value it cannot encode), an InterfaceError; not
#: asyncpg.DataError, which is PostgreSQL's (SQLSTATE class 22).
ClientDataError = asyncpg_client.DataError

#: Of those, the ones about our input or configuration, which no wait will cure: a value
#: asyncpg cannot encode, a bad connection option, a certificate that does not verify.
DATABASE_REFUSED: tuple[type[Exception], ...] = (
    ClientDataError,
    asyncpg.ClientConfigurationError,
    ssl.SSLCertVerificationError,
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means "retry later": the database is down or unreachable."""
    return isinstance(exc, DATABASE_UNAVAILABLE) and not isinstance(exc, DATABASE_REFUSED)


#: The first pgvector with iterative index scans (`hnsw.iterative_scan`), which keep a
#: filtered search going until it has its results.
ITERATIVE_SCAN_VERSION = (0, 8, 0)


async def pgvector_version(pool: Pool) -> tuple[int, ...]:
    """The version of the vector extension, e.g. (0, 8, 5)."""
    text = await pool.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    return tuple(int(part) for part in re.findall(r"\d+", str(text))[:3])


async def _init_connection(connection: asyncpg.Connection) -> None:
    await register_vector(connection)


async def apply_migrations(connection: asyncpg.Connection) -> list[str]:
    """Apply the SQL files under ingestion/migrations not applied yet, in name order."""
    await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await connection.fetch("SELECT name FROM schema_migrations")}
        applied = []
        for entry in sorted(_MIGRATIONS.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql") or entry.name in done:
                continue
            async with connection.transaction():
                await connection.execute(entry.read_text())
                await connection.execute(
                    "INSERT INTO schema_migrations (name) VALUES ($1)", entry.name
                )
            log.info("migration applied name=%s", entry.name)
            applied.append(entry.name)
        return applied
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


async def connect(database_url: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """A pool on a migrated database (the vector extension exists before codecs register).

    A database that is not up yet is waited for (START_RETRY, a warning per attempt; cancel
    to give up); one that refuses us (bad password, no such database) is an error.
    """
    connection: asyncpg.Connection | None = None
    async for attempt in retrying(START_RETRY, retry_if=database_unavailable, what="database"):
        with attempt:
            connection = await asyncpg.connect(database_url)
    assert connection is not None
    try:
        await apply_migrations(connection)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init_connection
    )
    assert pool is not None
    return pool
