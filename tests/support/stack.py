"""The one-command stack (`python -m embedpipe.stack`) as a child process of a test or a
benchmark: started from a clean environment on free ports, its output collected line by
line so callers can wait for what it reports, and the dev API key it writes.

Owns: that clean environment, starting the stack, following its output, the supervised
services' current pids (from its "started service=... pid=..." lines), and stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from embedpipe.redis_server import find_redis_server, free_port
from tests.support.processes import REPO

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
_STARTED = re.compile(r"started service=(\S+) pid=(\d+)")


@dataclass
class RunningStack:
    process: asyncio.subprocess.Process
    data_dir: Path
    ingestion_url: str
    lines: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return (self.data_dir / "dev-api-key").read_text().strip()

    def pids(self, prefix: str) -> dict[str, int]:
        """The latest pid of every service whose name starts with `prefix`."""
        found: dict[str, int] = {}
        for line in self.lines:
            if (match := _STARTED.search(line)) and match.group(1).startswith(prefix):
                found[match.group(1)] = int(match.group(2))
        return found

    async def wait_for_line(
        self, pattern: str, timeout_s: float = START_TIMEOUT_S
    ) -> re.Match[str]:
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout_s):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = len(self.lines)
                if self.process.returncode is not None:
                    raise AssertionError(f"the stack exited: {self.lines[-20:]}")
                await asyncio.sleep(0.1)


def clean_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """What a user's fresh shell has (no services of ours configured), plus `settings`."""
    redis_dir = str(Path(find_redis_server()).parent)
    env = {
        "PATH": f"{redis_dir}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "EMBEDPIPE_DATA_DIR": str(data_dir),
        "EMBEDDING_GRPC_PORT": str(free_port()),
        "GATEWAY_PORT": str(free_port()),
        "INGESTION_PORT": str(free_port()),
    }
    env.update(settings)
    return env


async def _pump(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while raw := await stream.readline():
        lines.append(raw.decode(errors="replace").rstrip())


async def start_stack(env: Mapping[str, str]) -> tuple[RunningStack, asyncio.Task[None]]:
    """Start the stack and wait until it says it is up; the task collects its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "embedpipe.stack",
        env=dict(env), cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    stack = RunningStack(
        process, Path(env["EMBEDPIPE_DATA_DIR"]), f"http://127.0.0.1:{env['INGESTION_PORT']}"
    )
    pump = asyncio.create_task(_pump(process.stdout, stack.lines))
    try:
        await stack.wait_for_line(r"embedpipe is up")
    except BaseException:
        await stop_stack(stack, pump)
        raise
    return stack, pump


async def stop_stack(stack: RunningStack, pump: asyncio.Task[None]) -> int | None:
    """SIGTERM the stack, wait for it (killing it after STOP_TIMEOUT_S); its exit code.

    Its services run in sessions of their own, so a stack that had to be killed leaves
    them behind (holding our pipe open): they are killed too.
    """
    if stack.process.returncode is None:
        services = psutil.Process(stack.process.pid).children(recursive=True)
        stack.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(stack.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            stack.process.kill()
            await stack.process.wait()
            for service in services:
                with contextlib.suppress(psutil.Error):
                    service.kill()
    await pump
    return stack.process.returncode


@contextlib.asynccontextmanager
async def running_stack(env: Mapping[str, str]) -> AsyncIterator[RunningStack]:
    stack, pump = await start_stack(env)
    try:
        yield stack
    finally:
        await stop_stack(stack, pump)
