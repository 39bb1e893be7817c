"""The one error type of the Ingestion Service.

Everything that goes wrong in `ingestion/` is an `IngestionError` with an `IngestionErrorCode`.
Transports map it once: the HTTP middleware to a status (INVALID_ARGUMENT 400,
UNSUPPORTED_MEDIA_TYPE 415, PAYLOAD_TOO_LARGE 413, UNPROCESSABLE 422, ...; ingestion/http.py),
the worker to a failed task whose `error_code` is the code's value. Library exceptions never
cross this line: a parser failing on a hostile file becomes UNPROCESSABLE, never a 500, and a
failed call to the embedding server becomes one of ours by class (ingestion/upstream.py).
"""

from __future__ import annotations

from enum import StrEnum


class IngestionErrorCode(StrEnum):
    """Stable codes; they are stored on failed tasks and sent to clients, so never rename one."""

    #: The request is malformed: a bad field, a bad parameter.
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    #: No such collection, document or task (for this tenant: another tenant's are not found).
    NOT_FOUND = "NOT_FOUND"
    #: A file type we do not ingest (e.g. an image, a spreadsheet).
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    #: The upload is over the size limit.
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    #: A supported type with nothing extractable: corrupt, encrypted, binary, hostile or empty.
    UNPROCESSABLE = "UNPROCESSABLE"
    #: The request clashes with the current state (e.g. a collection name already taken).
    CONFLICT = "CONFLICT"
    #: The resource is not in a state that allows it (a task that has ended, a collection
    #: being re-embedded already).
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    #: No or an unknown API key.
    UNAUTHENTICATED = "UNAUTHENTICATED"
    #: A known key that may not do this.
    PERMISSION_DENIED = "PERMISSION_DENIED"
    #: The tenant is over its request rate.
    RATE_LIMITED = "RATE_LIMITED"
    #: The Embedding Service refused or failed the document's chunks.
    EMBEDDING_FAILED = "EMBEDDING_FAILED"
    #: A dependency (Redis, PostgreSQL, the Embedding Service) cannot be reached now.
    UNAVAILABLE = "UNAVAILABLE"
    #: A dependency did not answer within the time allowed.
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


#: Codes worth retrying: the same call may succeed later.
TRANSIENT_CODES = frozenset(
    {
        IngestionErrorCode.UNAVAILABLE,
        IngestionErrorCode.RATE_LIMITED,
        IngestionErrorCode.DEADLINE_EXCEEDED,
    }
)


class IngestionError(Exception):
    """A failure of the Ingestion Service: a code, a message for the client, maybe a field."""

    def __init__(
        self,
        code: IngestionErrorCode,
        message: str,
        field: str | None = None,
        *,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        #: The request field at fault (e.g. `file`, `chunk_tokens`), for bad input.
        self.field = field
        #: Whole seconds to wait before a retry, when a dependency said.
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"IngestionError({self.code.value}, {self.message!r}, field={self.field!r})"

    @property
    def transient(self) -> bool:
        """Whether retrying the same call may succeed."""
        return self.code in TRANSIENT_CODES
