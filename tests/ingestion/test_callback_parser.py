"""Properties of the callback parser: whatever lands on the callback queue, the consumer
either gets the seed's callback back or a MalformedCallbackError that says what is wrong.

Any other exception would be retried forever and block the queue behind it, so "never
another exception" is the property that matters most.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.callbacks import FLOAT32_MAX, MalformedCallbackError, parse_callback

BOUNDED = settings(max_examples=200, deadline=None)

REQUIRED = ("task_id", "document_id", "collection_id", "tenant_id", "status")

# Text PostgreSQL can store: no NUL, and (hypothesis' default) no lone surrogates.
_TEXT = st.characters(codec="utf-8", exclude_characters="\x00")
ids = st.text(_TEXT, min_size=1, max_size=24)
texts = st.text(_TEXT, max_size=60)
# What the embedding worker writes: vectors.tolist() of float32 rows.
components = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def success_callbacks(draw: st.DrawFn) -> dict[str, Any]:
    dimensions = draw(st.integers(1, 8))
    chunk_ids = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    tokens = draw(st.integers(0, 10_000))
    return {
        **draw(envelopes("success")),
        "dimensions": dimensions,
        "embeddings": [
            {
                "chunk_id": chunk_id,
                "embedding": draw(st.lists(components, min_size=dimensions, max_size=dimensions)),
            }
            for chunk_id in chunk_ids
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


@st.composite
def error_callbacks(draw: st.DrawFn) -> dict[str, Any]:
    return {
        **draw(envelopes("error")),
        "error_code": draw(st.sampled_from(["PROVIDER_REJECTED", "TIMEOUT", "INVALID_INPUT"])),
        "error_message": draw(texts),
    }


def envelopes(status: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "task_id": ids,
            "document_id": ids,
            "collection_id": ids,
            "tenant_id": ids,
            "status": st.just(status),
            "job_id": st.text("0123456789abcdef", min_size=32, max_size=32),
            "model": st.sampled_from(["", "all-MiniLM-L6-v2", "text-embedding-3-small"]),
        }
    )


callbacks = st.one_of(success_callbacks(), error_callbacks())


def encode(callback: object, *, ascii_only: bool = True) -> bytes:
    return json.dumps(callback, ensure_ascii=ascii_only).encode()


def refused(raw: bytes) -> str:
    """The parser's reason for refusing `raw` (the test fails if it is accepted)."""
    with pytest.raises(MalformedCallbackError) as caught:
        parse_callback(raw)
    return str(caught.value)


# Paths to the fields the parser checks; each names itself in the refusal. ----------------

Path = tuple[str | int, ...]


def checked_paths(callback: dict[str, Any]) -> list[Path]:
    paths: list[Path] = [(name,) for name in REQUIRED]
    if callback["status"] == "error":
        return [*paths, ("error_code",), ("error_message",)]
    paths.append(("embeddings",))
    for i, entry in enumerate(callback["embeddings"]):
        paths += [("embeddings", i), ("embeddings", i, "chunk_id"), ("embeddings", i, "embedding")]
        paths += [("embeddings", i, "embedding", j) for j in range(len(entry["embedding"]))]
    return paths


def label(path: Path) -> str:
    """How the parser names a field: `embeddings[0].embedding[3]`."""
    text = str(path[0])
    for part in path[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def parent_of(callback: dict[str, Any], path: Path) -> Any:
    node: Any = callback
    for part in path[:-1]:
        node = node[part]
    return node


# Values of the wrong type for each kind of field (none holding NUL: that is its own case).
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)
)
_CONTAINERS = st.one_of(st.lists(_SCALARS, max_size=3), st.dictionaries(ids, _SCALARS, max_size=3))
_NOT_TEXT = st.one_of(_SCALARS, _CONTAINERS)


def wrong_values(path: Path) -> st.SearchStrategy[object]:
    last = path[-1]
    if isinstance(last, int) and len(path) == 4:  # a vector component
        return st.one_of(st.none(), st.booleans(), texts, _CONTAINERS)
    if isinstance(last, int):  # an embeddings entry
        return st.one_of(_SCALARS, texts, st.lists(_SCALARS, max_size=3))
    if last in ("embeddings", "embedding"):
        return st.one_of(_SCALARS, texts, st.dictionaries(ids, _SCALARS, max_size=3))
    if last == "error_message":
        return _NOT_TEXT
    if last == "status":
        return st.one_of(_NOT_TEXT, ids.filter(lambda s: s not in ("success", "error")))
    return st.one_of(_NOT_TEXT, st.just(""))  # ids and error_code: non-empty strings


# Properties --------------------------------------------------------------------------------


@BOUNDED
@given(st.binary(max_size=512))
def test_any_bytes_parse_or_are_refused_never_crash(raw: bytes) -> None:
    try:
        body = parse_callback(raw)
    except MalformedCallbackError:
        return
    assert isinstance(body, dict)


def json_documents(strings: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    return st.recursive(
        st.one_of(_SCALARS, strings),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)
        ),
        max_leaves=20,
    )


json_values = json_documents(st.text(max_size=10))  # NUL and lone surrogates too


@BOUNDED
@given(st.one_of(json_values, callbacks.flatmap(lambda c: st.just({**c, "extra": c}))))
def test_any_json_document_parses_or_is_refused_never_crash(value: object) -> None:
    try:
        body = parse_callback(encode(value))
    except MalformedCallbackError:
        return
    assert body == value


@BOUNDED
@given(callbacks, st.binary(min_size=1, max_size=8), st.data())
def test_valid_callbacks_with_bytes_spliced_in_parse_or_are_refused(
    callback: dict[str, Any], noise: bytes, data: st.DataObject
) -> None:
    raw = encode(callback)
    at = data.draw(st.integers(0, len(raw)))
    try:
        body = parse_callback(raw[:at] + noise + raw[at:])
    except MalformedCallbackError:
        return
    assert isinstance(body, dict)


@BOUNDED
@given(callbacks, st.booleans())
def test_valid_callbacks_round_trip(callback: dict[str, Any], ascii_only: bool) -> None:
    assert parse_callback(encode(callback, ascii_only=ascii_only)) == callback


@BOUNDED
@given(callbacks, st.dictionaries(texts, json_documents(texts), max_size=3))
def test_fields_added_later_are_tolerated(
    callback: dict[str, Any], extra: dict[str, object]
) -> None:
    """The schema says fields may be added, never renamed: unknown ones are ignored."""
    extended = {**extra, **callback}
    assert parse_callback(encode(extended)) == extended


@BOUNDED
@given(callbacks, st.data())
def test_a_callback_missing_a_field_is_refused_naming_it(
    callback: dict[str, Any], data: st.DataObject
) -> None:
    paths = [p for p in checked_paths(callback) if isinstance(p[-1], str)]
    path = data.draw(st.sampled_from(paths))
    broken = copy.deepcopy(callback)
    del parent_of(broken, path)[path[-1]]
    assert label(path) in refused(encode(broken))


@BOUNDED
@given(callbacks, st.data())
def test_a_callback_with_a_wrong_typed_field_is_refused_naming_it(
    callback: dict[str, Any], data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(checked_paths(callback)))
    broken = copy.deepcopy(callback)
    parent_of(broken, path)[path[-1]] = data.draw(wrong_values(path))
    assert label(path) in refused(encode(broken))


def vector_components(callback: dict[str, Any]) -> list[Path]:
    return [p for p in checked_paths(callback) if len(p) == 4]


@BOUNDED
@given(success_callbacks(), st.sampled_from([float("nan"), float("inf"), float("-inf")]), st.data())
def test_nan_and_infinity_are_refused_naming_them(
    callback: dict[str, Any], constant: float, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(vector_components(callback)))
    parent_of(callback, path)[path[-1]] = constant
    assert json.dumps(constant) in refused(encode(callback))  # "NaN", "Infinity", ...


huge_numbers = st.one_of(
    st.integers(min_value=int(FLOAT32_MAX) + 1, max_value=10**4000),
    st.floats(min_value=FLOAT32_MAX * 1.0001, allow_infinity=False),
).flatmap(lambda x: st.sampled_from([x, -x]))


@BOUNDED
@given(success_callbacks(), huge_numbers, st.data())
def test_numbers_a_vector_cannot_hold_are_refused_naming_where(
    callback: dict[str, Any], number: float, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(vector_components(callback)))
    parent_of(callback, path)[path[-1]] = number
    reason = refused(encode(callback))
    assert label(path) in reason and "32-bit float range" in reason


@pytest.mark.parametrize("literal", [b"1e400", b"-1e400", b"1" + b"0" * 400])
def test_number_literals_beyond_a_double_are_refused(literal: bytes) -> None:
    raw = b'{"task_id":"t","document_id":"d","collection_id":"c","tenant_id":"a",'
    raw += b'"status":"success","embeddings":[{"chunk_id":"x","embedding":[0.5,' + literal
    raw += b"]}]}"
    assert "embeddings[0].embedding[1]" in refused(raw)


def string_paths(value: Any, path: Path = ()) -> list[tuple[Path, bool]]:
    """Every string in `value`: (path, whether it is a key) pairs."""
    found: list[tuple[Path, bool]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append(((*path, key), True))
            found += string_paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += string_paths(item, (*path, i))
    elif isinstance(value, str):
        found.append((path, False))
    return found


@BOUNDED
@given(callbacks, st.data())
def test_nul_characters_anywhere_are_refused(callback: dict[str, Any], data: st.DataObject) -> None:
    path, is_key = data.draw(st.sampled_from(string_paths(callback)))
    parent = parent_of(callback, path)
    original = path[-1] if is_key else parent[path[-1]]
    assert isinstance(original, str)
    at = data.draw(st.integers(0, len(original)))
    poisoned = original[:at] + "\x00" + original[at:]
    if is_key:
        parent[poisoned] = parent.pop(original)
    else:
        parent[path[-1]] = poisoned
    assert "NUL" in refused(encode(callback, ascii_only=data.draw(st.booleans())))


def test_lone_surrogates_are_refused() -> None:
    raw = b'{"task_id":"t\\ud800","document_id":"d","collection_id":"c","tenant_id":"a",'
    raw += b'"status":"error","error_code":"E","error_message":"m"}'
    assert "surrogate" in refused(raw)


def nested_in_a_callback(opening: bytes, depth: int) -> bytes:
    closing = b"]" if opening == b"[" else b"}"
    nested = opening * depth + b"1" + closing * depth
    raw = b'{"task_id":"t","document_id":"d","collection_id":"c","tenant_id":"a",'
    return raw + b'"status":"error","error_code":"E","error_message":"m","x":' + nested + b"}"


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_deeply_nested_documents_are_refused_not_a_crash(opening: bytes) -> None:
    assert "nested too deeply" in refused(nested_in_a_callback(opening, 100_000))


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_moderately_nested_extra_fields_are_walked_without_recursion(opening: bytes) -> None:
    """An extra field nested hundreds deep is still searched for NUL characters."""
    depth = sys.getrecursionlimit() // 2
    assert parse_callback(nested_in_a_callback(opening, depth))["task_id"] == "t"
    poisoned = nested_in_a_callback(opening, depth).replace(b"1", b'"\\u0000"', 1)
    assert "NUL" in refused(poisoned)
