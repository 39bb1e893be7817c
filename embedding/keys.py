"""Every Redis key and group name of the Embedding Service, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from embedpipe.streams import JobStreamKeys

#: Consumer group of the embedding workers on the job stream.
WORKER_GROUP = "embedding-workers"


@dataclass(frozen=True)
class EmbeddingKeys(JobStreamKeys):
    """Key names under one prefix (`EMBEDDING_KEY_PREFIX`, default "embedding"): the job
    stream of accepted jobs, its dead-letter stream (inspect and re-drive from there), and:"""

    prefix: str = "embedding"

    def dedupe(self, fingerprint: str) -> str:
        """String `<job_id> <accepted_ms>` for a request fingerprint (idempotent accept)."""
        return f"{self.prefix}:dedupe:{fingerprint}"

    def done(self, job_id: str) -> str:
        """Marker set when a job's callback was pushed, so it is pushed only once."""
        return f"{self.prefix}:done:{job_id}"

    def rate_limit(self, tenant_id: str) -> str:
        """Token bucket (hash: tokens, ts_ms) of one tenant's calls."""
        return f"{self.prefix}:ratelimit:{tenant_id}"
