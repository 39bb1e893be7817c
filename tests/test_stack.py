"""The one-command stack, as a user runs it: start, ingest with the CLI, search, stop,
start again; and a worker killed under it is reported, restarted and the work completes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.processes import REPO
from tests.support.stack import RunningStack, clean_env, running_stack, start_stack


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    # Short enough that a killed worker's jobs come back within the test.
    return clean_env(tmp_path / "data", EMBEDDING_CLAIM_IDLE_MS="3000")


@pytest.fixture
async def stack(stack_env: dict[str, str]) -> AsyncIterator[RunningStack]:
    async with running_stack(stack_env) as running:
        yield running


async def cli(stack: RunningStack, *args: str) -> tuple[int, str]:
    """Run the `embedpipe` CLI against the stack; returns (exit code, stdout)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "embedpipe.cli",
        "--url", stack.ingestion_url, "--api-key", stack.key, *args,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode()


def write_folder(folder: Path) -> None:
    folder.mkdir()
    (folder / "garden.md").write_text(
        "# Garden\n\nTomatoes need six hours of direct sunlight and deep watering twice a week.\n"
    )
    (folder / "trains.html").write_text(
        "<html><body><h1>Trains</h1><p>The night train to Vienna leaves platform nine at "
        "ten past eleven.</p></body></html>"
    )
    (folder / "bread.txt").write_text(
        "Sourdough bread rises slowly overnight in a cool kitchen before it is baked.\n"
    )


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


async def test_the_stack_ingests_searches_stops_cleanly_and_keeps_its_data(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    first, pump = await start_stack(stack_env)
    folder = tmp_path / "docs"
    write_folder(folder)
    code, out = await cli(first, "--json", "ingest", str(folder), "--collection", "mixed")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["completed"] == 3, summary

    code, out = await cli(
        first, "--json", "search", "when does the overnight train depart?", "--collection", "mixed"
    )
    assert code == 0, out
    results: list[dict[str, Any]] = json.loads(out)["results"]
    assert "Vienna" in results[0]["text"]

    children = _descendants(first.process.pid)
    assert len(children) >= 6  # embedding server + worker, gateway, ingestion api + worker, redis
    first.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.process.wait(), 10) == 0
    await pump
    _gone, alive = psutil.wait_procs(children, timeout=2)
    assert not alive, f"orphans: {[p.cmdline() for p in alive]}"

    second, pump = await start_stack(stack_env)
    try:
        code, out = await cli(
            second, "--json", "search", "how much sun do tomatoes need?", "--collection", "mixed"
        )
        assert code == 0, out
        assert "Tomatoes" in json.loads(out)["results"][0]["text"]
    finally:
        second.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.process.wait(), 10)
        await pump


async def test_a_killed_embedding_worker_is_reported_restarted_and_ingestion_completes(
    stack: RunningStack, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    write_folder(folder)
    ingest = asyncio.create_task(
        cli(stack, "--json", "ingest", str(folder), "--collection", "during-kill")
    )
    match = await stack.wait_for_line(r"started service=embedding-worker-1 pid=(\d+)")
    old_pid = match.group(1)
    await stack.wait_for_line(r"chunks sent task_id=", 60)  # the ingestion is under way
    os.kill(int(old_pid), signal.SIGKILL)
    await stack.wait_for_line(r"service=embedding-worker-1 exited code=-9; restarting it", 30)
    await stack.wait_for_line(rf"started service=embedding-worker-1 pid=(?!{old_pid}\b)\d+", 30)

    code, out = await ingest
    assert code == 0, out
    assert json.loads(out)["completed"] == 3
