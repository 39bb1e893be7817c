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

import re
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from google.protobuf import json_format, struct_pb2
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
# json_format names the field in one of two ways.
_FIELD_FIRST = re.compile(r"^Failed to parse (\w+) field")
_FIELD_LAST = re.compile(r" at \w+\.(\w+)\.?$")
_KIND = {
    FieldDescriptor.TYPE_STRING: "a string",
    FieldDescriptor.TYPE_BOOL: "true or false",
    FieldDescriptor.TYPE_BYTES: "base64 text",
    FieldDescriptor.TYPE_DOUBLE: "a number",
    FieldDescriptor.TYPE_FLOAT: "a number",
    FieldDescriptor.TYPE_INT32: "an integer",
    FieldDescriptor.TYPE_INT64: "an integer",
}
_RANGE = {
    FieldDescriptor.TYPE_INT32: f" from {-(2**31)} to {2**31 - 1}",
    FieldDescriptor.TYPE_INT64: f" from {-(2**63)} to {2**63 - 1}",
}
_MESSAGE_KIND = {_STRUCT: "a JSON object", "google.protobuf.Timestamp": "an RFC 3339 time"}


class JsonFieldError(ValueError):
    """A JSON value that does not fit its field."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def to_json(message: Message) -> dict[str, Any]:
    """The message as a JSON object: every field present, unset ones `null`."""
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _complete(cast(Descriptor, message.DESCRIPTOR), body)
    return body


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
    """`body` as a `message_type`; JsonFieldError naming the field whose value does not fit."""
    message = message_type()
    try:
        json_format.ParseDict(dict(body), message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise _field_error(cast(Descriptor, message.DESCRIPTOR), str(exc)) from None
    return message


def _field_error(descriptor: Descriptor, text: str) -> JsonFieldError:
    """Which field json_format's message names, and what that field takes."""
    text = " ".join(text.split())
    match = _FIELD_FIRST.match(text) or _FIELD_LAST.search(text)
    field = descriptor.fields_by_name.get(match[1]) if match else None
    if field is None:
        return JsonFieldError("body", text)
    if field.message_type is not None:
        kind = _MESSAGE_KIND.get(field.message_type.full_name, "an object")
    else:
        kind = _KIND.get(field.type, "a value of its type")
        if "out of range" in text:
            kind += _RANGE.get(field.type, "")
    if field.is_repeated:
        kind = f"an array, each item {kind}"
    return JsonFieldError(field.name, f"must be {kind}")
