"""Every Redis key and channel name of the Ingestion Service, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from embedpipe.streams import JobStreamKeys

WORKER_GROUP = "ingestion-workers"


@dataclass(frozen=True)
class IngestionKeys(JobStreamKeys):
    """Key names under one prefix (`INGESTION_KEY_PREFIX`, default "ingestion"): the job
    stream of extracted documents waiting to be chunked and embedded, its dead-letter
    stream, and:"""

    prefix: str = "ingestion"

    def processing(self, consumer: str) -> str:
        """A consumer's in-flight callbacks (BLMOVE target), emptied once stored."""
        return f"{self.prefix}:callbacks:processing:{consumer}"

    @property
    def processing_consumers(self) -> str:
        """Sorted set: consumer → last heartbeat (ms), to recover a dead consumer's list."""
        return f"{self.prefix}:callbacks:consumers"

    @property
    def callbacks_dead_letter(self) -> str:
        """List of callbacks that could not be parsed, kept for inspection."""
        return f"{self.prefix}:callbacks:dead"

    def events(self, tenant_id: str) -> str:
        """Pub/sub channel of one tenant's task events."""
        return f"{self.prefix}:events:{tenant_id}"

    def rate_limit(self, tenant_id: str) -> str:
        """Token bucket (hash: tokens, ts_ms) of one tenant's calls, over both transports."""
        return f"{self.prefix}:ratelimit:{tenant_id}"
