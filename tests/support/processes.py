"""The child processes of a benchmark run, and the run's own interrupt signals.

Owns: starting the services a benchmark measures as children with their output in a log
(each in its own session by default, so a Ctrl-C reaches only the benchmark, which then
stops them in order), the tail of those logs, stopping them all (SIGTERM, then SIGKILL),
waiting until one is ready (failing early if it exits), the readiness probes (gRPC health,
HTTP 200), the CPU seconds a process has used, and turning SIGINT/SIGTERM into
KeyboardInterrupt so the children are stopped on the way out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

#: The repository: the children's working directory, and what goes on their PYTHONPATH.
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


#: Prefixes of our settings: a service we start gets none of the caller's.
OUR_PREFIXES = ("EMBEDDING_", "REDIS_", "GATEWAY_", "EMBEDPIPE_", "INGESTION_", "DATABASE_")


def service_env(**settings: str) -> dict[str, str]:
    """The environment of a service we start: this one's without any setting of ours (they
    come from `settings` alone), the repository importable, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_PREFIXES)}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **settings)
    return env


def start_child(
    args: list[str], env: dict[str, str], log_path: Path, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """`args` (`python ...` when they start with "-m") in REPO, output in `log_path`."""
    command = [sys.executable, *args] if args[0] == "-m" else args
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    #: Lines of the log `tail()` gives by default; None for the whole log.
    tail_lines: int | None = 20

    def tail(self, lines: int | None = None) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        wanted = self.tail_lines if lines is None else lines
        kept = text.splitlines()
        return "\n".join(kept if wanted is None else kept[-wanted:])


@dataclass
class Children:
    """The processes this run started; stopped in reverse order (SIGTERM, then SIGKILL)."""

    workdir: Path
    #: Lines of a child's log quoted when it fails (None: all of it).
    tail_lines: int | None = 20
    #: How long a child may take to exit after SIGTERM before it is killed.
    stop_timeout_s: float = 15.0
    #: Own session: a Ctrl-C reaches only us, and we stop the children in order.
    new_session: bool = True
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        """`args` in REPO with `env`, its output in `<workdir>/<name>.log`."""
        log = self.workdir / f"{name}.log"
        process = start_child(args, env, log, new_session=self.new_session)
        child = Child(name, process, log, self.tail_lines)
        self.started.append(child)
        return child

    def check_alive(self) -> None:
        """Raises RuntimeError, with its log's tail, if a child has exited."""
        for child in self.started:
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
                )

    def stop_all(self) -> None:
        for child in reversed(self.started):
            if child.process.poll() is None:
                child.process.terminate()
        for child in reversed(self.started):
            try:
                child.process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self.started.clear()


def wait_ready(
    child: Child,
    ready: Callable[[], bool],
    what: str,
    *,
    timeout_s: float = START_TIMEOUT_S,
    poll_s: float = 0.1,
) -> None:
    """Until `ready()` is true; fails early if the child exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.process.returncode}:\n{child.tail()}"
            )
        if ready():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"{child.name}: {what} not seen in {timeout_s:.0f}s\n{child.tail()}")


def grpc_serving(target: str) -> bool:
    """Whether the gRPC health service at `target` answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ready(url: str) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """User + system CPU time of a process so far (0 once it is gone); with its live and
    reaped children (PostgreSQL's backends) when asked."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    total = int(fields[11]) + int(fields[12])
    if with_children:
        total += int(fields[13]) + int(fields[14])  # children already exited and reaped
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                child = _stat(int(entry.name))
            except OSError:
                continue
            if int(child[1]) == pid:
                total += int(child[11]) + int(child[12])
    return total / tick


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so `finally` blocks stop the children;
    also when started from a script (which ignores SIGINT for background jobs)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
