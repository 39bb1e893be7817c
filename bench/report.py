"""How every benchmark reports: a table of figures, each next to its target and PASS or
MISS, drawn like the CLI's tables (embedpipe/tables.py)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from embedpipe.tables import print_table


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def against(target: str, ok: bool) -> str:
    """A target and whether it was met: `>= 1,000/s  PASS`."""
    return f"{target}  {verdict(ok)}"


def table(rows: Sequence[Sequence[object]], header: Sequence[str] = ("", "", "")) -> None:
    print_table(rows, header, sys.stdout)


def codes(counts: Mapping[Any, int]) -> str:
    """Status codes and their counts: `202:9980 503:20`."""
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))
