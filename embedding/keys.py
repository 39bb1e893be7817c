"""Every Redis key and group name of the Embedding Service, in one place."""

from __future__ import annotations

from dataclasses import dataclass

#: Consumer group of the embedding workers on the job stream.
WORKER_GROUP = "embedding-workers"


@dataclass(frozen=True)
class EmbeddingKeys:
    """Key names under one prefix (`EMBEDDING_KEY_PREFIX`, default "embedding")."""

    prefix: str = "embedding"

    @property
    def jobs(self) -> str:
        """Stream of accepted jobs; entries are deleted once acknowledged, never trimmed."""
        return f"{self.prefix}:jobs"

    @property
    def dead_letter(self) -> str:
        """Stream of jobs given up on, with the reason; inspect and re-drive from here."""
        return f"{self.prefix}:jobs:dead"

    def dedupe(self, fingerprint: str) -> str:
        """String `<job_id> <accepted_ms>` for a request fingerprint (idempotent accept)."""
        return f"{self.prefix}:dedupe:{fingerprint}"

    def done(self, job_id: str) -> str:
        """Marker set when a job's callback was pushed, so it is pushed only once."""
        return f"{self.prefix}:done:{job_id}"

    def rate_limit(self, tenant_id: str) -> str:
        """Token bucket (hash: tokens, ts_ms) of one tenant's calls."""
        return f"{self.prefix}:ratelimit:{tenant_id}"
