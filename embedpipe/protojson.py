"""The JSON form of our proto messages, as HTTP bodies carry them.

It is protobuf's canonical JSON mapping (`google.protobuf.json_format`), with our field
names as in the protos and two choices made for clients reading it as plain JSON:

- every field is present: a field that may be unset (`optional`, a message) is `null`;
- a whole number in free-form JSON (a `google.protobuf.Struct`) stays whole: `2024`, not
  `2024.0` (a Struct holds doubles; JavaScript prints them this way too).

`from_json` reads a JSON object into a message, naming the field at fault when a value has
the wrong type; fields a message does not have are ignored, as JSON clients expect.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any, TypeVar, cast

from google.protobuf import json_format, message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

#: Doubles that are whole and this small print as integers, exactly.
_EXACT_INTEGERS = 2**53
_JSON_AS_IS = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
    }
)
_STRUCT = "google.protobuf.Struct"
_KIND = {
    FieldDescriptor.TYPE_STRING: "a string",
    FieldDescriptor.TYPE_BOOL: "true or false",
    FieldDescriptor.TYPE_BYTES: "base64 text",
    FieldDescriptor.TYPE_DOUBLE: "a number",
    FieldDescriptor.TYPE_FLOAT: "a number",
}
_MESSAGE_KIND = {
    _STRUCT: "a JSON object",
    "google.protobuf.Timestamp": "an RFC 3339 time",
    "google.protobuf.Duration": "a duration in seconds, like 1.5s",
}
_INTEGER_BITS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_NUMBER_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})
_CONSTRUCTIBLE_SCALARS = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_UINT32,
    }
)


class JsonFieldError(ValueError):
    """JSON values that do not fit their fields: (field path, what it must be) each."""

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {description}" for field, description in violations))
        self.violations = violations


def to_json(message: Message) -> dict[str, Any]:
    """The message as a JSON object: every field present, unset ones `null`.

    A flat message (strings, bools, 32-bit integers and times; no lists or nested messages,
    such as GenerateEmbeddingsResponse) is read field by field, 5x faster than json_format
    (6 against 17 µs for that reply); `canonical_json` is the same for every message.
    """
    plan = _flat_plan(cast(Descriptor, message.DESCRIPTOR))
    if plan is None:
        return canonical_json(message)
    body: dict[str, Any] = {}
    for name, has_presence, is_time in plan:
        if has_presence and not message.HasField(name):
            body[name] = None
        elif is_time:
            body[name] = getattr(message, name).ToJsonString()
        else:
            body[name] = getattr(message, name)
    return body


def canonical_json(message: Message) -> dict[str, Any]:
    """`to_json` of any message, through json_format."""
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _complete(cast(Descriptor, message.DESCRIPTOR), body)
    return body


#: Scalars whose JSON form is their Python value (64-bit integers are strings in JSON,
#: floats may be "NaN", bytes base64, enums names).
_FLAT_SCALARS = _CONSTRUCTIBLE_SCALARS | {
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_FIXED32,
}
_TIMESTAMP = "google.protobuf.Timestamp"


@cache
def _flat_plan(descriptor: Descriptor) -> tuple[tuple[str, bool, bool], ...] | None:
    """(name, has presence, is a Timestamp) of each field of a flat message; None if the
    message is not flat."""
    plan = []
    for field in descriptor.fields:
        if field.is_repeated:
            return None
        message = field.message_type
        if message is None and field.type not in _FLAT_SCALARS:
            return None
        if message is not None and message.full_name != _TIMESTAMP:
            return None
        plan.append((field.name, field.has_presence, message is not None))
    return tuple(plan)


def _complete(descriptor: Descriptor, body: dict[str, Any]) -> None:
    for field in descriptor.fields:
        value = body.get(field.name)
        if field.name not in body:
            body[field.name] = None
        elif field.message_type is None or value is None:
            continue
        elif field.message_type.full_name == _STRUCT:
            body[field.name] = whole_numbers(value)
        elif field.message_type.full_name in _JSON_AS_IS:
            continue
        elif field.is_repeated:
            for item in value:
                _complete(field.message_type, item)
        else:
            _complete(field.message_type, value)


def whole_numbers(value: Any) -> Any:
    """A JSON value with its whole doubles as ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INTEGERS:
        return int(value)
    if isinstance(value, dict):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    return value


def struct_object(message: struct_pb2.Struct) -> dict[str, Any]:
    """The JSON object a Struct holds, whole numbers as ints (as clients sent them)."""
    value: dict[str, Any] = whole_numbers(json_format.MessageToDict(message))
    return value


def struct_of(value: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def from_json(body: Mapping[str, Any], message_type: type[M]) -> M:
    """`body` as a `message_type`; JsonFieldError naming every field whose value does not
    fit (`chunks[0].text`), if json_format refuses it.

    A body whose values already have their fields' types is built by the message's own
    (C) constructor, six times faster than json_format (85 against 14 µs for a generate
    request of three chunks; docs/libraries.md); that is used only for
    messages where the two cannot differ (see `_constructible`), and anything the
    constructor refuses goes to json_format, which decides and names the field.
    """
    descriptor = cast(Descriptor, message_type.DESCRIPTOR)
    if _constructible(descriptor) and all(
        isinstance(body.get(f.name, ()), list | tuple) for f in _repeated(descriptor)
    ):
        try:
            return message_type(**body)
        except (TypeError, ValueError, AttributeError):  # AttributeError: a non-object Struct
            pass
    message = message_type()
    try:
        json_format.ParseDict(dict(body), message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        found = list(_misfits(descriptor, body, ""))
        raise JsonFieldError(found or [("body", " ".join(str(exc).split()))]) from None
    # json_format reads a string where an object belongs as an empty object (it iterates the
    # characters as keys, and ignores unknown keys): refuse what does not fit here too.
    if found := list(_misfits(descriptor, body, "")):
        raise JsonFieldError(found)
    return message


@cache
def _constructible(descriptor: Descriptor) -> bool:
    """Whether the constructor reads a body as json_format does, or refuses it: only strings,
    integers (it refuses booleans and fractions for them), bools, Structs and messages of
    those, repeated only at the top (it would take a string for a list of characters)."""
    return all(_plain(field, top=True) for field in descriptor.fields)


def _plain(field: FieldDescriptor, *, top: bool) -> bool:
    if field.is_repeated and not top:
        return False
    message = field.message_type
    if message is not None:
        if message.full_name.startswith("google.protobuf."):
            return message.full_name == _STRUCT
        return all(_plain(nested, top=False) for nested in message.fields)
    return field.type in _CONSTRUCTIBLE_SCALARS


@cache
def _repeated(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    return tuple(field for field in descriptor.fields if field.is_repeated)


Misfit = tuple[str, str]


def _misfits(descriptor: Descriptor, body: Mapping[str, Any], prefix: str) -> Iterator[Misfit]:
    """(path, what it must be) of each value in `body` its field cannot take."""
    for name, value in body.items():
        field = descriptor.fields_by_name.get(name)
        if field is None or value is None:
            continue  # unknown fields are ignored; null is the default
        path = f"{prefix}{name}"
        if not field.is_repeated:
            yield from _value_misfits(field, value, path)
        elif not isinstance(value, list):
            yield path, "must be an array"
        else:
            for i, item in enumerate(value):
                yield from _value_misfits(field, item, f"{path}[{i}]")


def _value_misfits(field: FieldDescriptor, value: Any, path: str) -> Iterator[Misfit]:
    message = field.message_type
    if message is not None and message.full_name not in _MESSAGE_KIND:
        if message.full_name in ("google.protobuf.Value", "google.protobuf.ListValue"):
            return
        if not isinstance(value, dict):
            yield path, "must be an object"
        else:
            yield from _misfits(message, value, path + ".")
    elif not _fits(field, value):
        yield path, f"must be {_kind(field)}"


def _fits(field: FieldDescriptor, value: Any) -> bool:
    message = field.message_type
    if message is not None:
        if message.full_name == _STRUCT:
            return isinstance(value, dict)
        try:
            json_format.ParseDict(value, message_factory.GetMessageClass(message)())
        except json_format.ParseError:
            return False
        return True
    if field.type == FieldDescriptor.TYPE_STRING:
        return isinstance(value, str)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return isinstance(value, bool)
    if field.type == FieldDescriptor.TYPE_BYTES:
        try:
            base64.b64decode(value, altchars=b"-_" if "-" in value or "_" in value else None)
        except (TypeError, ValueError):
            return False
        return isinstance(value, str)
    if field.type in _INTEGER_BITS:
        low, high = _INTEGER_BITS[field.type]
        number = _integer(value)
        return number is not None and low <= number <= high
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, str):
            return value in _NUMBER_WORDS or _decimal(value)
        return isinstance(value, int | float) and not isinstance(value, bool)
    if field.enum_type is not None:
        # By name; or by number, which may be one this build does not know yet.
        known = isinstance(value, str) and value in field.enum_type.values_by_name
        return known or _integer(value) is not None
    return True


def _decimal(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _kind(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        return _MESSAGE_KIND.get(field.message_type.full_name, "an object")
    kind = _KIND.get(field.type, "a value of its type")
    if field.enum_type is not None:
        return "one of " + ", ".join(field.enum_type.values_by_name)
    if field.type in _INTEGER_BITS:
        low, high = _INTEGER_BITS[field.type]
        return f"an integer from {low} to {high}"
    return kind
