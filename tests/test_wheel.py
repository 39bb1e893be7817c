"""embedpipe installed as a Python tool is installed: the wheel, built with the standard build
front end, goes into a fresh venv outside the checkout (no source tree on its path, no
Node.js on PATH); `embedpipe up` starts the whole stack on free ports with its data in the
user's data folder, `embedpipe ingest` and `embedpipe search` work against it, and a
SIGTERM stops it leaving no process behind."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from embedpipe.redis_server import free_port
from tests.support.processes import REPO

#: Seconds for building, installing (dependencies from the pip cache or PyPI) and a run.
TIMEOUT_S = 900
SYSTEM_BIN = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")
NODE = {"node", "nodejs", "npm", "npx", "corepack"}
#: The checkout minus what is not source (virtualenvs, Node.js modules, caches, data).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "data", "build", "dist", "*.egg-info", "__pycache__",
    ".mypy_cache", ".ruff_cache", ".pytest_cache",
)  # fmt: skip


def run(
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    log: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs `command`; if it fails, the message holds its output and the stack's `log`."""
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )
    stack = f"\nthe stack's log ends:\n{log.read_text()[-6000:]}" if log else ""
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}{stack}"
    return done


def path_without_node(folder: Path) -> str:
    """A PATH of the system's commands, linked into `folder`, without Node.js."""
    folder.mkdir()
    for directory in SYSTEM_BIN:
        for entry in Path(directory).iterdir() if Path(directory).is_dir() else ():
            link = folder / entry.name
            if entry.name not in NODE and not link.exists():
                link.symlink_to(entry)
    return str(folder)


def wait_ready(url: str, stack: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert stack.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not ready:\n{log.read_text()[-4000:]}")


@pytest.mark.timeout(TIMEOUT_S)
def test_the_wheel_runs_the_stack_from_a_fresh_venv_without_the_checkout(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
         str(tmp_path / "dist"), str(source)], timeout=TIMEOUT_S)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("embedpipe-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    extra = "" if shutil.which("redis-server") else "[redis]"
    run([str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel}{extra}"], timeout=TIMEOUT_S)

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:{path_without_node(tmp_path / 'bin')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }
    assert shutil.which("node", path=env["PATH"]) is None
    where = run([str(venv / "bin" / "python"), "-c", "import embedpipe, ingestion;"
                 "print(embedpipe.__file__, ingestion.__file__)"], env=env, cwd=work)  # fmt: skip
    assert all(path.startswith(str(venv)) for path in where.stdout.split()), where.stdout
    version = run([str(venv / "bin" / "embedpipe"), "--version"], env=env, cwd=work)
    assert version.stdout.startswith("embedpipe 0.")

    names = ("EMBEDDING_GRPC_PORT", "GATEWAY_PORT", "INGESTION_PORT", "INGESTION_GRPC_PORT")
    ports = {name: str(free_port()) for name in names}
    log = tmp_path / "stack.log"
    children: list[psutil.Process] = []
    with log.open("wb") as output:
        stack = subprocess.Popen(
            [str(venv / "bin" / "embedpipe"), "up"], env={**env, **ports}, cwd=work,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{ports['INGESTION_PORT']}"
        # Ready as the banner says it: the gateway's readiness is the embedding server's
        # (its models loaded), the ingestion API's its own.
        wait_ready(f"http://127.0.0.1:{ports['GATEWAY_PORT']}/readyz", stack, log)
        wait_ready(api + "/readyz", stack, log)
        children = psutil.Process(stack.pid).children(recursive=True)
        assert len(children) >= 6, children  # Redis, PostgreSQL and the services
        # The data in the user's data folder, where the CLI finds the dev key.
        assert (home / ".local" / "share" / "embedpipe" / "dev-api-key").is_file()

        docs = work / "docs"
        docs.mkdir()
        (docs / "ferries.md").write_text("# Ferries\n\nThe ferry to the island leaves at 7:40.")
        (docs / "bakery.md").write_text("# Bakery\n\nThe bakery sells rye bread on Fridays.")
        cli = [str(venv / "bin" / "embedpipe"), "--url", api]
        run([*cli, "ingest", str(docs), "--collection", "town"], env=env, cwd=work, log=log)
        found = run([*cli, "--json", "search", "when does the boat leave", "--collection",
                     "town", "--top-k", "1"], env=env, cwd=work, log=log)  # fmt: skip
        (top,) = json.loads(found.stdout)["results"]
        assert "ferry" in top["text"]
        # The console's files are in the wheel too.
        for page in ("/console", "/console/console.js", "/console/console.css"):
            with urllib.request.urlopen(api + page, timeout=5) as answer:
                assert answer.status == 200 and answer.read(), page
    finally:
        stack.send_signal(signal.SIGTERM)
        code = stack.wait(120)
    assert code == 0, log.read_text()[-4000:]
    left = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, left
    ours = [
        p.info for p in psutil.process_iter(["pid", "cmdline"], ad_value=None)
        if any(str(tmp_path) in part for part in p.info["cmdline"] or ())
    ]  # fmt: skip
    assert not ours, ours
    assert (home / ".local" / "share" / "embedpipe" / "postgres").is_dir()
