"""The JSON form of our messages: what HTTP clients read, and how their bodies are read."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.message import Message

from embedpipe.embedding.v1 import callback_pb2, queue_service_pb2
from embedpipe.embedding.v1 import embedding_service_pb2 as embedding_pb
from embedpipe.ingestion.v1 import ingestion_service_pb2 as pb
from embedpipe.ingestion.v1 import resources_pb2
from embedpipe.protojson import (
    JsonFieldError,
    _flat_plan,
    canonical_json,
    from_json,
    struct_of,
    to_json,
)

CHUNKS = [{"chunk_id": "d:0", "text": "Some text.", "metadata": {"page": 1, "tags": ["a"]}}]


def test_every_field_is_written_unset_ones_null_whole_numbers_whole() -> None:
    task = resources_pb2.Task(task_id="t", status="embedding")
    body = to_json(task)
    assert body["task_id"] == "t" and body["chunks_total"] == 0
    assert body["error_code"] is None and body["finished_at"] is None
    collection = resources_pb2.Collection(metadata=struct_of({"year": 2024, "ratio": 0.5}))
    metadata = to_json(collection)["metadata"]
    assert metadata == {"year": 2024, "ratio": 0.5} and isinstance(metadata["year"], int)


def our_messages() -> list[type[Message]]:
    """Every message type of our protos, nested ones too."""
    found: list[type[Message]] = []
    pending = [
        descriptor
        for module in (embedding_pb, pb, resources_pb2, callback_pb2, queue_service_pb2)
        for descriptor in module.DESCRIPTOR.message_types_by_name.values()
    ]
    while pending:
        descriptor = pending.pop()
        pending += descriptor.nested_types
        if not descriptor.GetOptions().map_entry:
            found.append(message_factory.GetMessageClass(descriptor))
    return found


def filled(message_type: type[Message]) -> Message:
    """A message with every scalar and time field set to a value that is not its default."""
    message = message_type()
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated or (field.message_type and field.message_type.name != "Timestamp"):
            continue
        if field.message_type is not None:
            getattr(message, field.name).FromMilliseconds(1_733_333_333_123)
        elif field.type == field.TYPE_STRING:
            setattr(message, field.name, f"{field.name} ✓")
        elif field.type == field.TYPE_BOOL:
            setattr(message, field.name, True)
        elif field.cpp_type in (field.CPPTYPE_INT32, field.CPPTYPE_UINT32):
            setattr(message, field.name, 7)
    return message


def test_the_fast_form_of_flat_messages_is_json_formats_form() -> None:
    """to_json reads flat messages field by field; each reads as json_format (and
    `_complete`) write it, set or unset, and the fast form covers the accept's reply."""
    flat = [m for m in our_messages() if _flat_plan(m.DESCRIPTOR) is not None]
    assert embedding_pb.GenerateEmbeddingsResponse in flat
    for message_type in our_messages():
        for message in (message_type(), filled(message_type)):
            assert to_json(message) == canonical_json(message), message_type


@pytest.mark.parametrize(
    ("message_type", "body"),
    [
        (embedding_pb.GenerateEmbeddingsRequest, {"document_id": "d", "chunks": CHUNKS}),
        (pb.SearchRequest, {"query": "q", "top_k": 3, "filter": {"lang": "en"}}),
        (pb.SearchRequest, {"query": "q", "top_k": "7"}),  # the JSON mapping takes "7"
        (pb.SearchRequest, {"query": "q", "top_k": 5.0}),
        (pb.SearchRequest, {"query": "q", "topK": 3}),  # and the camelCase names
        (pb.SearchRequest, {"query": "q", "top_k": None, "filter": None}),  # null: unset
        (pb.SearchRequest, {"query": "q", "unknown": 1}),  # ignored
        (pb.SearchRequest, {"mode": "SEARCH_MODE_KEYWORD"}),  # an enum by name
        (pb.SearchRequest, {"mode": 3}),  # or number
        (pb.SearchRequest, {"conditions": [{"key": "k", "equals": {"a": [1, None]}}]}),
        (pb.CreateCollectionRequest, {"collection_id": "c", "chunk_tokens": 0}),
        (pb.DocumentHeader, {"text": "t", "metadata": {"n": None, "deep": {"x": [1, 2]}}}),
    ],
)
def test_bodies_read_as_json_format_reads_them(
    message_type: type[Message], body: dict[str, Any]
) -> None:
    expected = message_type()
    json_format.ParseDict(body, expected, ignore_unknown_fields=True)
    read = from_json(body, message_type)
    assert read == expected
    for field in ("top_k", "chunk_tokens"):  # presence too: 0 is set, null is not
        if field in expected.DESCRIPTOR.fields_by_name:
            assert read.HasField(field) == expected.HasField(field)


@pytest.mark.parametrize(
    ("message_type", "body", "violations"),
    [
        (pb.SearchRequest, {"top_k": True}, [("top_k", "must be an integer from")]),
        (pb.SearchRequest, {"query": 5, "filter": [1]}, [("query", "must be a string"),
                                                         ("filter", "must be a JSON object")]),
        (pb.SearchRequest, {"filter": "x"}, [("filter", "must be a JSON object")]),
        (pb.SearchRequest, {"mode": "SEARCH_MODE_FUZZY"}, [("mode", "must be one of SEARCH_")]),
        (pb.SearchRequest, {"mode": True}, [("mode", "must be one of")]),
        (pb.SearchRequest, {"conditions": [{"key": 1, "exists": "yes"}]},
         [("conditions[0].key", "must be a string"),
          ("conditions[0].exists", "must be true or false")]),
        (pb.DocumentHeader, {"metadata": 5}, [("metadata", "must be a JSON object")]),
        (embedding_pb.EmbedRequest, {"inputs": "one text"}, [("inputs", "must be an array")]),
        (embedding_pb.GenerateEmbeddingsRequest, {"chunks": [{"chunk_id": 1, "text": 2}]},
         [("chunks[0].chunk_id", "must be a string"), ("chunks[0].text", "must be a string")]),
        (embedding_pb.GenerateEmbeddingsRequest, {"chunks": ["text"]},
         [("chunks[0]", "must be an object")]),
    ],
)  # fmt: skip
def test_values_that_do_not_fit_are_named_with_their_paths(
    message_type: type[Message], body: dict[str, Any], violations: list[tuple[str, str]]
) -> None:
    with pytest.raises(JsonFieldError) as refused:
        from_json(body, message_type)
    found = refused.value.violations
    assert [field for field, _ in found] == [field for field, _ in violations]
    for (_, description), (_, start) in zip(found, violations, strict=True):
        assert description.startswith(start)
