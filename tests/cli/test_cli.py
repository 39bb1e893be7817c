"""The `embedpipe` command line against real servers: ingest, search, listings, errors.

`main()` runs in a thread (its own event loop), so the in-process servers of the fixtures
keep serving on the test's loop; pytest's capsys captures what it prints.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import pytest

from embedpipe.cli import commands, ingest
from embedpipe.cli.api import default_api_key
from embedpipe.cli.files import SourceFile, discover, document_id_for
from embedpipe.cli.progress import BarView
from embedpipe.cli.tasks import Tracker
from embedpipe.redis_server import free_port
from tests.support.ingestion_calls import HANDBOOK
from tests.support.processes import REPO
from tests.support.tenants import TENANT_KEYS

KEY = TENANT_KEYS["tenant-a"]

PARKING_HTML = """<html><head><title>Parking</title></head><body>
<h1>Parking</h1>
<p>Visitors park in the north garage, level two. Bicycles go in the racks by the main
entrance; electric cars charge on level one.</p>
</body></html>
"""

CAFETERIA_TXT = """The cafeteria serves lunch from noon to two o'clock. Soup, salads and a hot
dish change daily; coffee and tea are free all day.
"""


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _no_cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing from the developer's shell or data folder leaks into the commands."""
    monkeypatch.delenv("EMBEDPIPE_URL", raising=False)
    monkeypatch.delenv("EMBEDPIPE_API_KEY", raising=False)
    monkeypatch.setenv("EMBEDPIPE_DATA_DIR", str(tmp_path / "no-data"))


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder of mixed documents: md, html, txt in a subfolder, a png, a hidden file."""
    folder = tmp_path / "docs"
    (folder / "notes").mkdir(parents=True)
    (folder / "handbook.md").write_text(HANDBOOK)
    (folder / "parking.html").write_text(PARKING_HTML)
    (folder / "notes" / "cafeteria.txt").write_text(CAFETERIA_TXT)
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / ".draft.md").write_text("# Draft\n\nNot for upload.")
    return folder


async def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = await asyncio.to_thread(commands.main, list(args))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def api_args(url: str) -> list[str]:
    return ["--url", url, "--api-key", KEY]


async def test_ingest_folder_completes_then_reingest_is_unchanged(
    ingestion_api: str, ingestion_worker: None, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await run_cli(
        capsys, *api_args(ingestion_api), "ingest", str(docs), "--collection", "kb"
    )
    assert first.code == 0, first
    assert "collection 'kb' did not exist; created it" in first.out
    assert re.search(r"skipped \S*logo\.png: unsupported file type \(\.png\)", first.out)
    assert "3 completed, 0 unchanged, 0 failed, 1 skipped" in first.out
    assert f"{docs / 'handbook.md'}: completed (" in first.out
    assert f"{docs / 'handbook.md'}: embedding" in first.out  # a line per status change
    assert ".draft.md" not in first.out and "\x1b[" not in first.out

    again = await run_cli(
        capsys, *api_args(ingestion_api), "ingest", str(docs), "--collection", "kb"
    )
    assert again.code == 0, again
    assert "0 completed, 3 unchanged, 0 failed, 1 skipped" in again.out

    as_json = await run_cli(
        capsys, "ingest", str(docs), "--collection", "kb", "--json", *api_args(ingestion_api)
    )
    assert as_json.code == 0, as_json
    summary = as_json.json()
    assert (summary["completed"], summary["unchanged"], summary["failed"]) == (0, 3, 0)
    assert summary["collection_created"] is False
    assert [s["path"] for s in summary["skipped"]] == [str(docs / "logo.png")]
    assert {t["document_id"] for t in summary["tasks"]} == {
        "handbook.md",
        "parking.html",
        "notes:cafeteria.txt",
    }
    assert all(t["status"] == "unchanged" and t["task_id"] for t in summary["tasks"])


async def test_search_status_collections_and_documents(
    ingestion_api: str, ingestion_worker: None, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = api_args(ingestion_api)
    ingested = await run_cli(
        capsys, "--json", *base, "ingest", str(docs), "--collection", "kb", "--create"
    )
    assert ingested.code == 0, ingested
    summary = ingested.json()
    assert summary["collection_created"] is True and summary["completed"] == 3
    task_id = next(t["task_id"] for t in summary["tasks"] if t["document_id"] == "handbook.md")

    query = "How many holidays do staff get each year?"
    found = await run_cli(capsys, *base, "search", query, "--collection", "kb", "--top-k", "3")
    assert found.code == 0, found
    first_line = found.out.splitlines()[0]
    assert re.fullmatch(r" 1\. \d\.\d{4}  handbook\.md  \[Employee handbook > Leave\]", first_line)
    assert "vacation" in found.out.splitlines()[1]
    by_words = await run_cli(
        capsys, *base, "search", "vacation", "--collection", "kb", "--mode", "keyword"
    )
    assert by_words.code == 0, by_words
    assert by_words.out.splitlines()[0].endswith("handbook.md  [Employee handbook > Leave]")

    found_json = await run_cli(
        capsys, *base, "search", "Where do visitors park?", "--collection", "kb", "--json"
    )
    results = found_json.json()["results"]
    assert results[0]["document_id"] == "parking.html" and "garage" in results[0]["text"]

    status = await run_cli(capsys, *base, "status", task_id, "--json")
    assert status.code == 0 and status.json()["status"] == "completed"
    status_text = await run_cli(capsys, *base, "status", task_id)
    assert re.search(r"^status\s+completed \(100%\)$", status_text.out, re.MULTILINE)

    listed = await run_cli(capsys, *base, "collections", "--json")
    (collection,) = listed.json()["collections"]
    assert collection["collection_id"] == "kb" and collection["document_count"] == 3
    listed_text = await run_cli(capsys, *base, "collections")
    assert re.search(r"^kb\s+all-MiniLM-L6-v2\s+384\s+3\s", listed_text.out, re.MULTILINE)

    documents = await run_cli(capsys, *base, "documents", "--collection", "kb", "--json")
    assert [d["document_id"] for d in documents.json()["documents"]] == [
        "handbook.md",
        "notes:cafeteria.txt",
        "parking.html",
    ]
    documents_text = await run_cli(capsys, *base, "documents", "--collection", "kb")
    assert re.search(r"^parking\.html\s+completed\s+\d+\s+parking\.html", documents_text.out, re.M)

    missing = await run_cli(capsys, *base, "documents", "--collection", "nope")
    assert missing.code == 2
    assert missing.err.strip() == "embedpipe: error: collection 'nope' not found"
    missing_task = await run_cli(capsys, *base, "status", "no-such-task")
    assert missing_task.code == 2 and "task 'no-such-task' not found" in missing_task.err


async def test_refused_upload_fails_with_its_message_and_exit_1(
    ingestion_api: str, ingestion_worker: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "handbook.md").write_text(HANDBOOK)
    run = await run_cli(
        capsys, *api_args(ingestion_api), "ingest", str(tmp_path / "empty.txt"),
        str(tmp_path / "handbook.md"), "--collection", "kb", "--json",
    )  # fmt: skip
    assert run.code == 1, run
    summary = run.json()
    assert (summary["completed"], summary["failed"]) == (1, 1)
    (failed,) = [t for t in summary["tasks"] if t["status"] == "failed"]
    assert failed["document_id"] == "empty.txt" and failed["task_id"] is None
    assert failed["error_code"] == "UNPROCESSABLE" and "empty" in failed["error_message"]

    text = await run_cli(
        capsys, *api_args(ingestion_api), "ingest", str(tmp_path), "--collection", "kb"
    )
    assert text.code == 1
    assert "0 completed, 1 unchanged, 1 failed, 0 skipped" in text.out
    assert re.search(r"failed  \S*empty\.txt: UNPROCESSABLE: .*empty", text.out)


async def test_ingest_falls_back_to_polling_when_the_socket_drops(
    ingestion_api: str,
    ingestion_worker: None,
    docs: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def drop(socket: aiohttp.ClientWebSocketResponse, tracker: Tracker) -> None:
        await socket.close()

    monkeypatch.setattr(ingest, "_listen", drop)
    run = await run_cli(capsys, *api_args(ingestion_api), "ingest", str(docs), "--collection", "kb")
    assert run.code == 0, run
    assert "the event socket closed; following the tasks by polling" in run.out
    assert "3 completed, 0 unchanged, 0 failed, 1 skipped" in run.out


async def test_unreachable_api_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "embedpipe.cli", "--url", url, "collections",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 2
    message = (
        f"embedpipe: error: cannot reach the embedpipe API at {url} — is the stack up? (make up)"
    )
    assert err.decode().strip() == message and out == b""

    (tmp_path / "a.md").write_text("# A\n\ntext")
    run = await run_cli(capsys, "ingest", str(tmp_path), "--collection", "kb", "--url", url)
    assert run.code == 2 and "cannot reach the embedpipe API" in run.err
    assert "Traceback" not in run.err + run.out


async def test_bad_key_exit_2_and_says_how_to_pass_one(
    ingestion_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await run_cli(capsys, "--url", ingestion_api, "--api-key", "wrong", "collections")
    assert run.code == 2
    assert "refused the API key (401)" in run.err and "--api-key" in run.err
    assert "Traceback" not in run.err and len(run.err.strip().splitlines()) == 1

    (tmp_path / "a.md").write_text("# A\n\ntext")
    no_key = await run_cli(
        capsys, "--url", ingestion_api, "ingest", str(tmp_path), "--collection", "kb"
    )
    assert (
        no_key.code == 2 and "no API key given" in no_key.err and "EMBEDPIPE_API_KEY" in no_key.err
    )


def test_missing_path_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = commands.main(["ingest", str(tmp_path / "nope"), "--collection", "kb"])
    assert code == 2
    assert f"no such file or folder: {tmp_path / 'nope'}" in capsys.readouterr().err


def test_discover_walks_folders_skips_hidden_and_unsupported(docs: Path) -> None:
    (docs / ".git").mkdir()
    (docs / ".git" / "README.md").write_text("# hidden folder")
    (docs / "notes" / "REPORT.PDF").write_bytes(b"%PDF-1.4")
    sources, skipped = discover([str(docs), str(docs / "handbook.md")])
    assert [s.document_id for s in sources] == [
        "handbook.md",
        "notes:REPORT.PDF",
        "notes:cafeteria.txt",
        "parking.html",
    ]
    assert sources[1].content_type == "application/pdf"
    assert [(s.path.name, s.reason) for s in skipped] == [
        ("logo.png", "unsupported file type (.png)")
    ]


def test_document_ids_are_valid_and_stable() -> None:
    pattern = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
    long_path = PurePosixPath("a" * 100, "b" * 100 + ".md")
    for path in ("my notes/Q1 (draft).md", "_private/x.txt", "ünïcode.md", str(long_path)):
        document_id = document_id_for(PurePosixPath(path))
        assert pattern.fullmatch(document_id), document_id
        assert document_id == document_id_for(PurePosixPath(path))
    assert document_id_for(PurePosixPath("my notes/Q1 (draft).md")) == "my_notes:Q1_draft_.md"
    assert document_id_for(long_path) != document_id_for(PurePosixPath("a" * 99, "b" * 100 + ".md"))


def test_default_api_key_from_environment_then_dev_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dev-api-key").write_text("dev-key\n")
    assert default_api_key({"EMBEDPIPE_API_KEY": "env-key"}) == "env-key"
    assert default_api_key({"EMBEDPIPE_DATA_DIR": str(tmp_path)}) == "dev-key"
    assert default_api_key({"EMBEDPIPE_DATA_DIR": str(tmp_path / "none")}) is None
    # Without EMBEDPIPE_DATA_DIR: the user's data folder, where `embedpipe up` keeps it.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert default_api_key({}) is None
    (tmp_path / "share" / "embedpipe").mkdir(parents=True)
    (tmp_path / "share" / "embedpipe" / "dev-api-key").write_text("user-key\n")
    assert default_api_key({}) == "user-key"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def two_files(tmp_path: Path) -> list[SourceFile]:
    return [SourceFile(tmp_path / "a.md", "a.md"), SourceFile(tmp_path / "b.md", "b.md")]


def test_tracker_keeps_early_events_and_never_goes_back(
    two_files: list[SourceFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    screen = FakeTty()
    view = BarView(screen)
    tracker = Tracker(two_files, view)
    view.start(tracker.states)
    a, b = tracker.states
    event = {"type": "task", "task_id": "t-a", "chunks_total": 4, "chunks_embedded": 2}
    tracker.apply({**event, "status": "embedding", "progress": 52})  # before the 202 answer
    tracker.accepted(a, {"task_id": "t-a", "status": "extracting"})
    assert (a.status, a.progress, a.chunks_embedded) == ("embedding", 52, 2)
    tracker.apply({**event, "status": "chunking", "progress": 5})  # an older poll
    assert a.status == "embedding"
    view.refresh()
    drawing = screen.getvalue()
    tracker.refused(b, "UNSUPPORTED_MEDIA_TYPE", "not a document")
    tracker.apply({**event, "status": "completed", "chunks_embedded": 4})
    tracker.apply({**event, "status": "failed", "error_code": "X"})  # final stays final
    assert tracker.done and a.status == "completed" and a.error_code is None
    view.close()
    drawn = screen.getvalue()
    assert "\x1b[?25l" in drawing  # rich's live display: cursor hidden while it draws
    assert "✓ " + str(two_files[0].path) + ": completed (4 chunks)" in drawn
    assert "✗ " + str(two_files[1].path) + ": failed: UNSUPPORTED_MEDIA_TYPE" in drawn
    assert drawn.count(": completed (4 chunks)") == 1
    last = drawn.rsplit("\n", 2)[-2]
    assert "overall" in last and "100%" in last and "2/2 done" in last, last


def test_up_runs_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedpipe import stack

    monkeypatch.setattr(stack, "main", lambda: 7)
    assert commands.main(["up"]) == 7


def test_ctrl_c_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "_run", interrupted)
    assert commands.main(["collections"]) == 130
    assert capsys.readouterr() == ("", "")


async def run_in_terminal(*args: str, columns: int = 120) -> tuple[int, str]:
    """`python -m embedpipe.cli ARGS` on a pseudo-terminal: its exit code and what it drew
    (the terminal's \\r\\n turned back into \\n)."""
    controller, terminal = pty.openpty()
    env = {
        **os.environ,
        "COLUMNS": str(columns),
        "LINES": "40",
        "TERM": "xterm-256color",
        "PYTHONPATH": str(REPO),
    }
    env.pop("NO_COLOR", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "embedpipe.cli", *args,
        stdin=terminal, stdout=terminal, stderr=terminal, cwd=REPO, env=env,
    )  # fmt: skip
    os.close(terminal)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's last user has gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    async with asyncio.timeout(120):
        drawn, code = await asyncio.gather(asyncio.to_thread(read_all), process.wait())
    os.close(controller)
    return code, drawn.decode(errors="replace").replace("\r\n", "\n")


async def test_ingest_on_a_terminal_draws_live_bars_and_json_stays_plain(
    ingestion_api: str, ingestion_worker: None, docs: Path
) -> None:
    code, drawn = await run_in_terminal(
        *api_args(ingestion_api), "ingest", str(docs), "--collection", "kb"
    )
    assert code == 0, drawn
    assert "\x1b[?25l" in drawn and "\x1b[?25h" in drawn  # a live display, cursor restored
    assert "━" in drawn and "\x1b[" in drawn  # rich's bars, in colour
    assert re.search(r"overall\s.*━.*100%.*3/3 done", drawn), drawn[-600:]
    assert f"✓ {docs / 'handbook.md'}: completed (" in drawn
    assert drawn.rstrip().endswith("3 completed, 0 unchanged, 0 failed, 1 skipped")

    code, drawn = await run_in_terminal(
        *api_args(ingestion_api), "ingest", str(docs), "--collection", "kb", "--json"
    )
    assert code == 0, drawn
    assert "\x1b[" not in drawn
    summary = json.loads(drawn)
    assert (summary["completed"], summary["unchanged"], summary["failed"]) == (0, 3, 0)
