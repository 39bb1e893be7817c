"""How `embedpipe ingest` shows its progress.

On a terminal: a live block of progress bars (one per task in flight, and an overall one)
redrawn in place with plain ANSI escapes; finished tasks are printed above it as they end.
Anywhere else (pipes, logs, tests): one line per status change. With `--json`: nothing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from typing import Protocol, TextIO

from embedpipe.cli_tasks import TaskState

BAR_WIDTH = 20
NAME_WIDTH = 28
MAX_LIVE_ROWS = 12
REDRAW_INTERVAL_S = 0.1
HIDE_CURSOR, SHOW_CURSOR, CLEAR_BELOW = "\x1b[?25l", "\x1b[?25h", "\x1b[J"
MARKS = {"completed": "✓", "unchanged": "=", "failed": "✗"}


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
    if state.status == "completed":
        return f"completed ({state.chunks_total} chunk{'' if state.chunks_total == 1 else 's'})"
    if state.status == "failed":
        return f"failed: {state.error_code or 'ERROR'}: {state.error_message or 'no details'}"
    return state.status


def bar(percent: int, width: int = BAR_WIDTH) -> str:
    filled = max(0, min(width, round(width * percent / 100)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def task_row(state: TaskState) -> str:
    detail = state.status
    if state.status == "embedding" and state.chunks_total:
        detail += f" {state.chunks_embedded}/{state.chunks_total}"
    name = name_of(state, NAME_WIDTH)
    return f"  {name:<{NAME_WIDTH}} {bar(state.progress)} {state.progress:>3}%  {detail}"


def overall_row(states: Sequence[TaskState]) -> str:
    finished = sum(1 for s in states if s.final)
    percent = round(sum(s.progress for s in states) / len(states)) if states else 100
    if finished < len(states):
        percent = min(percent, 99)
    label = "overall"
    return f"  {label:<{NAME_WIDTH}} {bar(percent)} {percent:>3}%  {finished}/{len(states)} done"


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
        if state.status in ("queued", "uploading") or self._shown.get(id(state)) == state.status:
            return
        self._shown[id(state)] = state.status
        what = outcome(state) if state.final else state.status
        self.note(f"{name_of(state)}: {what}")


class BarView(QuietView):
    """Live progress bars redrawn in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._states: Sequence[TaskState] = ()
        self._above: list[str] = []  # lines to print above the live block at the next draw
        self._finished: set[int] = set()
        self._drawn = 0  # lines of the live block on screen
        self._last_draw = 0.0
        self._dirty = False

    def start(self, states: Sequence[TaskState]) -> None:
        self._states = states
        self._stream.write(HIDE_CURSOR)
        self._draw()

    def note(self, text: str) -> None:
        self._above.append(text)
        self._draw()

    def changed(self, state: TaskState) -> None:
        if state.final and id(state) not in self._finished:
            self._finished.add(id(state))
            self._above.append(f"{MARKS.get(state.status, ' ')} {name_of(state)}: {outcome(state)}")
        self._dirty = True
        if time.monotonic() - self._last_draw >= REDRAW_INTERVAL_S:
            self._draw()

    def refresh(self) -> None:
        if self._dirty:
            self._draw()

    def close(self) -> None:
        self._draw()
        self._stream.write(SHOW_CURSOR)
        self._stream.flush()

    def _live_rows(self) -> list[str]:
        if not self._states:
            return []
        # Tasks in flight first, then those still waiting for an upload slot.
        active = sorted(
            (s for s in self._states if not s.final), key=lambda s: s.status == "queued"
        )
        rows = [task_row(s) for s in active[:MAX_LIVE_ROWS]]
        if len(active) > MAX_LIVE_ROWS:
            rows.append(f"  … and {len(active) - MAX_LIVE_ROWS} more")
        return [*rows, overall_row(self._states)]

    def _draw(self) -> None:
        columns = max(20, shutil.get_terminal_size().columns - 1)
        parts = [f"\r\x1b[{self._drawn}A" if self._drawn else "\r", CLEAR_BELOW]
        parts += [line + "\n" for line in self._above]
        rows = [row[:columns] for row in self._live_rows()]  # no wrapping: the count must hold
        parts += [row + "\n" for row in rows]
        self._stream.write("".join(parts))
        self._stream.flush()
        self._above.clear()
        self._drawn = len(rows)
        self._last_draw = time.monotonic()
        self._dirty = False
