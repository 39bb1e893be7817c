"""Tables for our command-line output, drawn by rich: columns aligned to their widest cell,
a bold header on a terminal, never wrapped (a pipe gets whole lines, whatever their width)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table

#: Wide enough that no table is ever wrapped or cut.
_NO_WRAP_WIDTH = 1_000_000


def print_table(rows: Sequence[Sequence[object]], header: Sequence[str], out: TextIO) -> None:
    """Print `header` and `rows` to `out`; None prints as nothing."""
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for name in header:
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console = Console(file=out, width=_NO_WRAP_WIDTH, highlight=False)
    with console.capture() as capture:
        console.print(table)
    # Cells are padded to their column's width; a line's end needs no padding.
    print("\n".join(line.rstrip() for line in capture.get().splitlines()), file=out)
