import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Collection(_message.Message):
    __slots__ = ("tenant_id", "collection_id", "model", "dimensions", "chunk_tokens", "overlap_tokens", "metadata", "created_at", "document_count", "text_search_config", "chunk_count", "reembed_task_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_TOKENS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TEXT_SEARCH_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    REEMBED_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    collection_id: str
    model: str
    dimensions: int
    chunk_tokens: int
    overlap_tokens: int
    metadata: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    document_count: int
    text_search_config: str
    chunk_count: int
    reembed_task_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., model: _Optional[str] = ..., dimensions: _Optional[int] = ..., chunk_tokens: _Optional[int] = ..., overlap_tokens: _Optional[int] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., document_count: _Optional[int] = ..., text_search_config: _Optional[str] = ..., chunk_count: _Optional[int] = ..., reembed_task_id: _Optional[str] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("tenant_id", "collection_id", "document_id", "filename", "content_type", "content_hash", "metadata", "status", "chunk_count", "current_task_id", "created_at", "updated_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    collection_id: str
    document_id: str
    filename: str
    content_type: str
    content_hash: str
    metadata: _struct_pb2.Struct
    status: str
    chunk_count: int
    current_task_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., document_id: _Optional[str] = ..., filename: _Optional[str] = ..., content_type: _Optional[str] = ..., content_hash: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[str] = ..., chunk_count: _Optional[int] = ..., current_task_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("tenant_id", "task_id", "collection_id", "document_id", "status", "chunks_total", "chunks_embedded", "content_hash", "error_code", "error_message", "created_at", "updated_at", "finished_at", "progress", "kind", "model")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    task_id: str
    collection_id: str
    document_id: str
    status: str
    chunks_total: int
    chunks_embedded: int
    content_hash: str
    error_code: str
    error_message: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    progress: int
    kind: str
    model: str
    def __init__(self, tenant_id: _Optional[str] = ..., task_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., document_id: _Optional[str] = ..., status: _Optional[str] = ..., chunks_total: _Optional[int] = ..., chunks_embedded: _Optional[int] = ..., content_hash: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[int] = ..., kind: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "collection_id", "document_id", "status", "progress", "chunks_total", "chunks_embedded", "error_code", "error_message")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    collection_id: str
    document_id: str
    status: str
    progress: int
    chunks_total: int
    chunks_embedded: int
    error_code: str
    error_message: str
    def __init__(self, task_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., document_id: _Optional[str] = ..., status: _Optional[str] = ..., progress: _Optional[int] = ..., chunks_total: _Optional[int] = ..., chunks_embedded: _Optional[int] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("document_id", "chunk_id", "position", "text", "metadata", "score", "similarity", "vector_rank", "keyword_rank")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_RANK_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_RANK_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    chunk_id: str
    position: int
    text: str
    metadata: _struct_pb2.Struct
    score: float
    similarity: float
    vector_rank: int
    keyword_rank: int
    def __init__(self, document_id: _Optional[str] = ..., chunk_id: _Optional[str] = ..., position: _Optional[int] = ..., text: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., score: _Optional[float] = ..., similarity: _Optional[float] = ..., vector_rank: _Optional[int] = ..., keyword_rank: _Optional[int] = ...) -> None: ...
