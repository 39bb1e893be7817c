"""What a search's filters keep, and the SQL condition they become.

The filter is checked by the core (which names the request field at fault); here it only
turns into SQL over the `chunks` table, every value a parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

#: A path part `#>` takes for a position in an array (as PostgreSQL's strtol reads it).
_ARRAY_POSITION = re.compile(r"\s*[-+]?[0-9]+", re.ASCII)
#: A range's comparisons, by their field names in the contract.
RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True)
class Condition:
    """One test of the metadata value at `path`.

    `value` is, by test: equals, the JSON value; any_of, a list of them; range, the bounds
    by operator name (all numbers or all strings); exists, a bool.
    """

    path: tuple[str, ...]
    test: Literal["equals", "any_of", "range", "exists"]
    value: Any


@dataclass(frozen=True)
class ChunkFilter:
    """Chunks a search may return: every part must hold."""

    #: Metadata the chunk's must contain (JSON containment).
    contains: dict[str, Any] | None = None
    conditions: tuple[Condition, ...] = ()
    #: Only chunks of these documents, when not empty.
    document_ids: tuple[str, ...] = ()

    @property
    def indexed(self) -> bool:
        """Whether an index finds the chunks that pass (one part is enough: the rest is
        checked on what it finds): a part `indexed_in_chunks` or a range of numbers
        (`in_range_sql`). String ranges and key tests are checked chunk by chunk."""
        return self.indexed_in_chunks or self.number_range is not None

    @property
    def indexed_in_chunks(self) -> bool:
        """Whether an index of the chunks table finds them: containment, document ids, a
        scalar equality, a few scalar alternatives (the GIN and btree indexes)."""
        return bool(self.contains or self.document_ids) or any(
            (c.test == "equals" and _scalar(c.value))
            or (
                c.test == "any_of"
                and len(c.value) <= MAX_INDEXED_VALUES
                and all(_scalar(v) for v in c.value)
            )
            for c in self.conditions
        )

    @property
    def number_range(self) -> Condition | None:
        """The first range condition with numeric bounds the index holds (migration 007):
        not one whose path has a part that `#>` reads as an array position."""
        return next(
            (
                c
                for c in self.conditions
                if c.test == "range"
                and _numeric(c.value)
                and not any(_ARRAY_POSITION.fullmatch(part) for part in c.path)
            ),
            None,
        )


class SqlParameters:
    """The parameters of one statement, numbered as they are added."""

    def __init__(self, *first: object) -> None:
        self.values: list[object] = list(first)

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def in_range_sql(condition: Condition, parameters: SqlParameters) -> str:
    """The (task_id, chunk_id) of the chunks of the collection ($1, $2) whose number at the
    range's path is in it, through the btree of `chunk_numbers` (migration 006): a way to
    the chunks a numeric range keeps. Chunks of every generation, live or not: `filter_sql`
    and the collection's scope still test each one found."""
    tests = "".join(
        f" AND value {RANGE_OPERATORS[name]} {parameters.add(bound)}::numeric"
        for name, bound in _number_bounds(condition.value).items()
    )
    return (
        "SELECT task_id, chunk_id FROM chunk_numbers WHERE tenant_id = $1"
        f" AND collection_id = $2 AND path = {parameters.add(list(condition.path))}::text[]{tests}"
    )


def filter_sql(chunk_filter: ChunkFilter, parameters: SqlParameters) -> str:
    """The filter as SQL conditions joined by AND ("true" when it keeps everything)."""
    clauses = []
    if chunk_filter.contains is not None:
        clauses.append(f"metadata @> {parameters.add(json.dumps(chunk_filter.contains))}::jsonb")
    if chunk_filter.document_ids:
        clauses.append(f"document_id = ANY({parameters.add(list(chunk_filter.document_ids))})")
    clauses += [_condition_sql(condition, parameters) for condition in chunk_filter.conditions]
    return " AND ".join(f"({clause})" for clause in clauses) or "true"


#: Values of an any_of that are also tested by containment (the GIN index) one by one.
MAX_INDEXED_VALUES = 32


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """{"a": {"b": value}} for the path ("a", "b")."""
    for key in reversed(path):
        value = {key: value}
    nested: dict[str, Any] = value
    return nested


def _contains(path: tuple[str, ...], value: Any, parameters: SqlParameters) -> str:
    """Containment of a scalar at `path`: what the GIN index of metadata finds quickly.
    Only a pre-test: an array holding the value passes it, the exact test follows."""
    return f"metadata @> {parameters.add(json.dumps(_nested(path, value)))}::jsonb"


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _numeric(bounds: dict[str, Any]) -> bool:
    """Whether a range's bounds compare numbers (they are all numbers or all strings)."""
    return not all(isinstance(bound, str) for bound in bounds.values())


def _number_bounds(bounds: dict[str, Any]) -> dict[str, Decimal]:
    """Numeric bounds as PostgreSQL compares them: exact decimals of the floats given."""
    return {name: Decimal(repr(float(bound))) for name, bound in bounds.items()}


def _condition_sql(condition: Condition, parameters: SqlParameters) -> str:
    path = condition.path
    if condition.test == "exists":
        # Through objects only (strict); a key missing on the way is unknown (NULL).
        keys = ".".join(json.dumps(key) for key in path)
        found = f"metadata @? {parameters.add(f'strict $.{keys}')}::jsonpath"
        return found if condition.value else f"NOT coalesce({found}, false)"
    value = f"(metadata #> {parameters.add(list(path))}::text[])"
    match condition.test:
        case "equals":
            exact = f"{value} = {parameters.add(json.dumps(condition.value))}::jsonb"
            if not _scalar(condition.value):
                return exact
            return f"{_contains(path, condition.value, parameters)} AND {exact}"
        case "any_of":
            listed = parameters.add(json.dumps(condition.value))
            exact = f"{value} IN (SELECT jsonb_array_elements({listed}::jsonb))"
            values = condition.value
            if len(values) > MAX_INDEXED_VALUES or not all(_scalar(v) for v in values):
                return exact
            either = " OR ".join(_contains(path, v, parameters) for v in values)
            return f"({either}) AND {exact}"
        case "range":
            return _range_sql(value, condition.value, parameters)


def _range_sql(value: str, bounds: dict[str, Any], parameters: SqlParameters) -> str:
    """Numbers compare as numbers, strings byte by byte; a value of another type (or a
    number against string bounds) is out of range. CASE keeps PostgreSQL from casting a
    value before its type is known (AND does not fix an order)."""
    if not _numeric(bounds):
        kind, operand, cast = "string", f"{value} #>> '{{}}' COLLATE \"C\"", "::text"
        converted: dict[str, object] = dict(bounds)
    else:
        kind, operand, cast = "number", f"{value}::numeric", "::numeric"
        converted = dict(_number_bounds(bounds))
    tests = " AND ".join(
        f"{operand} {RANGE_OPERATORS[name]} {parameters.add(bound)}{cast}"
        for name, bound in converted.items()
    )
    return f"CASE WHEN jsonb_typeof({value}) = '{kind}' THEN {tests} ELSE false END"
