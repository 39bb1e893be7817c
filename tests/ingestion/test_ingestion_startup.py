"""An ingestion worker started before its PostgreSQL waits for it (with a warning per
attempt) instead of exiting, begins once it is up, and still stops at once on SIGTERM;
a DATABASE_URL that no wait can cure stops it at once with a message saying so."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from embedding.settings import EmbeddingSettings
from embedpipe.redis_server import free_port
from tests.support.processes import service_env, start_child

WAITING = "retrying what=database"


def _worker_env(settings: EmbeddingSettings, port: int) -> dict[str, str]:
    return service_env(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        REDIS_URL=settings.redis_url,
        INGESTION_KEY_PREFIX="startup-test",
    )


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


async def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(30):
        while text not in _text(log):
            assert process.poll() is None, _text(log)
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _worker(env: dict[str, str], log: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`python -m ingestion worker`, killed at the end if it is still running."""
    process = start_child(["-m", "ingestion", "worker"], env, log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _exit_code(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    return await asyncio.to_thread(process.wait, timeout_s)


@contextlib.asynccontextmanager
async def _forwarder(port: int, postgres_url: str) -> AsyncIterator[None]:
    """From now on, 127.0.0.1:`port` is a path to the test's PostgreSQL."""
    target = urlsplit(postgres_url)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            target.hostname, target.port
        )
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        yield


async def test_a_worker_started_before_postgres_waits_then_begins(
    settings: EmbeddingSettings, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    async with _worker(_worker_env(settings, port), log) as process:
        await _wait_for(log, WAITING, process)
        async with _forwarder(port, database_url):
            await _wait_for(log, "ingestion worker started", process)
            process.send_signal(signal.SIGTERM)
            assert await _exit_code(process, 15) == 0
    assert "Traceback" not in _text(log)


async def test_a_worker_waiting_for_postgres_stops_at_once_on_sigterm(
    settings: EmbeddingSettings, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    async with _worker(_worker_env(settings, free_port()), log) as process:
        await _wait_for(log, WAITING, process)
        process.send_signal(signal.SIGTERM)
        assert await _exit_code(process, 5) == 0
    text = _text(log)
    assert "stopped before the database came up" in text and "Traceback" not in text


@pytest.mark.parametrize("problem", ["a bad option", "no such database"])
async def test_a_database_url_the_database_refuses_stops_the_worker_with_a_clear_message(
    settings: EmbeddingSettings, database_url: str, tmp_path: Path, problem: str
) -> None:
    env = _worker_env(settings, free_port())
    if problem == "a bad option":
        env["DATABASE_URL"] += "?sslmode=bogus"
        expected = "sslmode"
    else:
        env["DATABASE_URL"] = database_url.removesuffix("/postgres") + "/no_such_database"
        expected = "no_such_database"
    log = tmp_path / "worker.log"
    async with _worker(env, log) as process:
        assert await _exit_code(process, 15) == 2
    text = _text(log)
    assert "cannot use the database of DATABASE_URL" in text and expected in text
    assert WAITING not in text and "Traceback" not in text
