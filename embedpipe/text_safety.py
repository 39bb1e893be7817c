"""Is every string in a JSON value text we can carry and store?

Python strings may hold lone surrogates (a JSON `"\\ud800"` decodes to one), which UTF-8,
protobuf and PostgreSQL all refuse; PostgreSQL text cannot hold NUL either. One walk,
iterative so that no nesting depth can crash it, finds the first such string, keys included.
"""

from __future__ import annotations

from collections.abc import Iterator


def _strings(value: object) -> Iterator[str]:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


def text_problem(value: object, *, nul_allowed: bool = True) -> str:
    """Why some string in `value` is not storable text, or "" when all are."""
    for text in _strings(value):
        if not nul_allowed and "\x00" in text:
            return "contains NUL characters, which PostgreSQL cannot store"
        try:
            text.encode()
        except UnicodeEncodeError:
            return "contains lone surrogates, which are not Unicode text"
    return ""
