"""Plain-text tables for our command-line output: columns aligned to their widest cell."""

from __future__ import annotations

from collections.abc import Sequence


def table_lines(rows: Sequence[Sequence[object]], header: Sequence[str]) -> list[str]:
    """The header and the rows as lines, columns aligned; None prints as nothing."""
    cells = [[str(c) for c in header], *([("" if c is None else str(c)) for c in r] for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
