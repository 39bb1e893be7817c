"""How `embedpipe ingest` shows its progress.

On a terminal: live progress bars drawn by rich (one per task in flight, and an overall
one); finished tasks are printed above them as they end. Anywhere else (pipes, logs,
tests): one plain line per status change. With `--json`: nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Column

from embedpipe.cli.tasks import QUEUED, UPLOADING, TaskState
from embedpipe.task_status import TaskStatus

BAR_WIDTH = 30
NAME_WIDTH = 28
MAX_LIVE_ROWS = 12
REFRESH_PER_S = 10
MARKS: dict[str, str] = {
    TaskStatus.COMPLETED: "✓",
    TaskStatus.UNCHANGED: "=",
    TaskStatus.FAILED: "✗",
}


class View(Protocol):
    """What the ingest command tells its display."""

    def start(self, states: Sequence[TaskState]) -> None: ...
    def note(self, text: str) -> None: ...
    def changed(self, state: TaskState) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...


def choose_view(stream: TextIO, json_output: bool) -> View:
    """Bars on a terminal, lines elsewhere, nothing for `--json`."""
    if json_output:
        return QuietView()
    if stream.isatty():
        return BarView(stream)
    return LineView(stream)


def name_of(state: TaskState, width: int | None = None) -> str:
    """The file's path as given, shortened from the left to `width`."""
    name = str(state.source.path)
    if width is not None and len(name) > width:
        name = "…" + name[-(width - 1) :]
    return name


def outcome(state: TaskState) -> str:
    """A finished task in words: `completed (3 chunks)`, `failed: CODE: message`."""
    if state.status == TaskStatus.COMPLETED:
        return f"completed ({state.chunks_total} chunk{'' if state.chunks_total == 1 else 's'})"
    if state.status == TaskStatus.FAILED:
        return f"failed: {state.error_code or 'ERROR'}: {state.error_message or 'no details'}"
    return state.status


def detail(state: TaskState) -> str:
    """A task in flight in words: `embedding 3/8`, `chunking`."""
    if state.status == TaskStatus.EMBEDDING and state.chunks_total:
        return f"embedding {state.chunks_embedded}/{state.chunks_total}"
    return state.status


def overall_percent(states: Sequence[TaskState]) -> int:
    """The mean progress; 100 only once every task is final."""
    if not states:
        return 100
    percent = round(sum(s.progress for s in states) / len(states))
    return percent if all(s.final for s in states) else min(percent, 99)


class QuietView:
    """No display (`--json`: the summary is the output)."""

    def start(self, states: Sequence[TaskState]) -> None:
        return None

    def note(self, text: str) -> None:
        return None

    def changed(self, state: TaskState) -> None:
        return None

    def refresh(self) -> None:
        return None

    def close(self) -> None:
        return None


class LineView(QuietView):
    """One line per status change, for output that is not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._shown: dict[int, str] = {}

    def note(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def changed(self, state: TaskState) -> None:
        if state.status in (QUEUED, UPLOADING) or self._shown.get(id(state)) == state.status:
            return
        self._shown[id(state)] = state.status
        what = outcome(state) if state.final else state.status
        self.note(f"{name_of(state)}: {what}")


class BarView(QuietView):
    """Live progress bars on a terminal: the first MAX_LIVE_ROWS tasks in flight and an
    overall bar; each finished task is printed above them once."""

    def __init__(self, stream: TextIO) -> None:
        self._console = Console(file=stream, highlight=False)
        self._progress = Progress(
            TextColumn("{task.description}", table_column=Column(width=NAME_WIDTH, no_wrap=True)),
            BarColumn(bar_width=BAR_WIDTH),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self._console,
            refresh_per_second=REFRESH_PER_S,
        )
        self._states: Sequence[TaskState] = ()
        self._rows: dict[int, TaskID] = {}
        self._reported: set[int] = set()
        self._overall: TaskID | None = None

    def start(self, states: Sequence[TaskState]) -> None:
        self._states = states
        self._progress.start()
        self._overall = self._progress.add_task("overall", total=100, detail="")
        self.refresh()

    def note(self, text: str) -> None:
        self._console.print(text, markup=False, soft_wrap=True)

    def changed(self, state: TaskState) -> None:
        key = id(state)
        row = self._rows.get(key)
        if state.final:
            if row is not None:
                self._progress.remove_task(self._rows.pop(key))
            if key not in self._reported:
                self._reported.add(key)
                self.note(f"{MARKS.get(state.status, ' ')} {name_of(state)}: {outcome(state)}")
        elif state.status != QUEUED:
            if row is None:
                row = self._rows[key] = self._progress.add_task(
                    name_of(state, NAME_WIDTH), total=100, detail="", visible=False
                )
            self._progress.update(row, completed=state.progress, detail=detail(state))
        self.refresh()

    def refresh(self) -> None:
        in_flight = [s for s in self._states if id(s) in self._rows]
        for index, state in enumerate(in_flight):
            self._progress.update(self._rows[id(state)], visible=index < MAX_LIVE_ROWS)
        if self._overall is None:
            return
        finished = sum(1 for s in self._states if s.final)
        summary = f"{finished}/{len(self._states)} done"
        if len(in_flight) > MAX_LIVE_ROWS:
            summary += f", {len(in_flight) - MAX_LIVE_ROWS} more in flight"
        self._progress.update(
            self._overall, completed=overall_percent(self._states), detail=summary
        )

    def close(self) -> None:
        self.refresh()
        self._progress.stop()
