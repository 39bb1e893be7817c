from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetQueueStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ("jobs_queued", "jobs_in_progress", "oldest_job_age_seconds", "jobs_dead_lettered")
    JOBS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    JOBS_IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_JOB_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    JOBS_DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    jobs_queued: int
    jobs_in_progress: int
    oldest_job_age_seconds: float
    jobs_dead_lettered: int
    def __init__(self, jobs_queued: _Optional[int] = ..., jobs_in_progress: _Optional[int] = ..., oldest_job_age_seconds: _Optional[float] = ..., jobs_dead_lettered: _Optional[int] = ...) -> None: ...
