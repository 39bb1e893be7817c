"""JSON that is safe to handle, for every JSON our services take from outside.

The standard parser accepts what a hostile client may send to make trouble further on:
`NaN` and `Infinity` (not JSON), `1e999` (becomes infinity), integers of thousands of
digits, duplicate keys (the last one silently wins), lone surrogates (`"\\ud800"`, which no
encoder downstream accepts) and nesting deep enough to exhaust the stack. `loads` refuses
each of them with a `StrictJsonError` that says which, so a client gets a 400 that names it.

The parser is the standard library's C one. Only texts that could hold a problem pay for
the extra checks, found by fast scans: a `\\u` escape for surrogates, enough brackets for
depth, a long digit run or a 3-digit exponent for numbers out of range (a vector of floats
is parsed at C speed, not number by number in Python).
"""

from __future__ import annotations

import json
import math
from typing import Any

from embedpipe.text_safety import text_problem

#: Deepest nesting accepted: the deepest of our messages is 4; metadata gets room to spare.
MAX_DEPTH = 32
#: Integers beyond 64 bits are refused: no field of ours holds one, and protobuf can't.
MAX_INTEGER = 2**64 - 1
#: Where a number out of range could be: an exponent of three digits, or 21 digits in a row
#: (an integer past 64 bits; a mantissa that overflows needs 309). Both are looked for in
#: the UTF-8 bytes with every digit turned into "#", E into e and + into -: one
#: translation and three substring searches in C, where a regular expression took 13 µs
#: over a 1.3 kB request (every letter e a start) and ten times as long over a vector of
#: floats.
_MASK = bytes.maketrans(b"0123456789E+", b"##########e-")
_LONG_DIGIT_RUN = b"#" * 21
_BIG_EXPONENTS = (b"e###", b"e-###")


class StrictJsonError(ValueError):
    """A JSON text refused, and why (a phrase naming the problem)."""


def _numbers_risky(raw: bytes) -> bool:
    """Whether the JSON in `raw` may hold a number out of range (then each is checked)."""
    masked = raw.translate(_MASK)
    return _LONG_DIGIT_RUN in masked or _BIG_EXPONENTS[0] in masked or _BIG_EXPONENTS[1] in masked


def _constant(name: str) -> float:
    raise StrictJsonError(f"{name} is not a JSON number")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 20 or abs(value := int(text)) > MAX_INTEGER:
        shown = text if len(text) <= 24 else text[:24] + "..."
        raise StrictJsonError(f"the integer {shown} is out of range")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(f"the number {text[:24]} is out of range")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise StrictJsonError(f"the key {key[:64]!r} appears twice in one object")
            seen.add(key)
    return result


def _depth(value: Any) -> int:
    """The nesting depth of a parsed value (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in item)
    return deepest


def loads(
    raw: bytes | str, *, max_depth: int | None = MAX_DEPTH, check_numbers: bool = True
) -> Any:
    """The JSON value of `raw` (UTF-8 bytes or text); StrictJsonError naming what is wrong.

    For a caller that checks its structure and numbers itself (and can say where a bad one
    is): `max_depth=None` leaves the depth to the parser's own limit (about 1,000 levels),
    `check_numbers=False` lets numbers out of range through (as infinity or big integers).
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJsonError(f"not valid UTF-8 (at byte {exc.start})") from None
        # Decoded strictly, the text holds a surrogate only where an escape put one.
        surrogates_possible = "\\u" in text
    else:
        text = raw
        surrogates_possible = True
    risky = check_numbers and _numbers_risky(
        raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    )
    try:
        if risky:
            value = json.loads(
                text,
                object_pairs_hook=_object,
                parse_constant=_constant,
                parse_int=_integer,
                parse_float=_float,
            )
        else:
            value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except RecursionError:
        raise StrictJsonError("nested too deeply") from None
    except StrictJsonError:
        raise
    except ValueError as exc:
        raise StrictJsonError(f"not valid JSON: {exc}") from None
    if (
        max_depth is not None
        and text.count("[") + text.count("{") > max_depth
        and _depth(value) > max_depth
    ):
        raise StrictJsonError(f"nested deeper than {max_depth} levels")
    if surrogates_possible and (problem := text_problem(value)):
        raise StrictJsonError(problem)
    return value
