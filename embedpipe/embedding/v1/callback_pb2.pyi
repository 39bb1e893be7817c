import datetime

from embedpipe.embedding.v1 import embedding_service_pb2 as _embedding_service_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbeddingCallback(_message.Message):
    __slots__ = ("task_id", "document_id", "collection_id", "tenant_id", "status", "embeddings", "error_message", "error_code", "job_id", "model", "dimensions", "usage", "pushed_at", "traceparent")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    PUSHED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    document_id: str
    collection_id: str
    tenant_id: str
    status: str
    embeddings: _containers.RepeatedCompositeFieldContainer[ChunkEmbedding]
    error_message: str
    error_code: str
    job_id: str
    model: str
    dimensions: int
    usage: _embedding_service_pb2.Usage
    pushed_at: _timestamp_pb2.Timestamp
    traceparent: str
    def __init__(self, task_id: _Optional[str] = ..., document_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., status: _Optional[str] = ..., embeddings: _Optional[_Iterable[_Union[ChunkEmbedding, _Mapping]]] = ..., error_message: _Optional[str] = ..., error_code: _Optional[str] = ..., job_id: _Optional[str] = ..., model: _Optional[str] = ..., dimensions: _Optional[int] = ..., usage: _Optional[_Union[_embedding_service_pb2.Usage, _Mapping]] = ..., pushed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...

class ChunkEmbedding(_message.Message):
    __slots__ = ("chunk_id", "embedding")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, chunk_id: _Optional[str] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...
