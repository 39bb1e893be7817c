"""Settings of the Ingestion Service, read from the environment at the entry point only."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from embedpipe.auth import KeyStore
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.envconfig import ConfigError, read_env, variable
from embedpipe.metrics import MetricsSettings

#: The tenant of every call when no API key is configured (development only).
DEFAULT_TENANT = "default"


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class IngestionSettings:
    """Where the service listens, what it talks to and its limits."""

    database_url: Annotated[str, variable("DATABASE_URL", min_length=1)]
    redis_url: Annotated[str, variable("REDIS_URL")] = "redis://127.0.0.1:6379/0"
    host: Annotated[str, variable("INGESTION_HOST")] = "127.0.0.1"
    port: Annotated[int, variable("INGESTION_PORT", ge=0, le=65535)] = 8090
    #: The gRPC front of the same API, served by the same process.
    grpc_host: Annotated[str, variable("INGESTION_GRPC_HOST")] = "127.0.0.1"
    grpc_port: Annotated[int, variable("INGESTION_GRPC_PORT", ge=0, le=65535)] = 50061
    key_prefix: Annotated[str, variable("INGESTION_KEY_PREFIX")] = "ingestion"
    #: The gateway: `POST {url}/api/v1/embeddings/generate`.
    embedding_service_url: Annotated[str, variable("EMBEDDING_SERVICE_URL")] = (
        "http://127.0.0.1:8080"
    )
    #: The embedding server, for query embeddings and the model list.
    embedding_grpc_target: Annotated[str, variable("EMBEDDING_GRPC_TARGET")] = "127.0.0.1:50051"
    #: This service's own key for the gateway: one of tenant "*", allowed to act for any.
    service_key: Annotated[str, variable("INGESTION_SERVICE_KEY")] = field(default="", repr=False)
    callback_queue: Annotated[str, variable("EMBEDDING_CALLBACK_QUEUE")] = (
        "ingestion:callbacks:embedding"
    )
    max_upload_bytes: Annotated[int, variable("INGESTION_MAX_UPLOAD_BYTES", ge=1)] = (
        20 * 1024 * 1024
    )
    default_model: Annotated[str, variable("INGESTION_DEFAULT_MODEL")] = DEFAULT_MODEL
    chunk_tokens: Annotated[int, variable("INGESTION_CHUNK_TOKENS", ge=16)] = 200
    overlap_tokens: Annotated[int, variable("INGESTION_OVERLAP_TOKENS", ge=0)] = 40
    #: Chunks per GenerateEmbeddings request; a larger document is sent in parts.
    request_chunks: Annotated[int, variable("INGESTION_REQUEST_CHUNKS", ge=1)] = 128
    request_timeout_s: Annotated[float, variable("INGESTION_REQUEST_TIMEOUT_S", gt=0)] = 30.0
    consumer_name: Annotated[str, variable("INGESTION_WORKER_NAME")] = field(
        default_factory=_consumer_name
    )
    claim_idle_ms: Annotated[int, variable("INGESTION_CLAIM_IDLE_MS", ge=100)] = 30_000
    max_deliveries: Annotated[int, variable("INGESTION_MAX_DELIVERIES", ge=1)] = 5
    #: Calls per second of one tenant, over HTTP and gRPC together (0: no limit), and the
    #: burst allowed above it.
    rate_limit_per_s: Annotated[float, variable("INGESTION_RATE_LIMIT_PER_S", ge=0)] = 100.0
    rate_limit_burst: Annotated[int, variable("INGESTION_RATE_LIMIT_BURST", ge=1)] = 200
    keys: KeyStore = field(default_factory=KeyStore)
    #: A worker's `GET /metrics` (METRICS_PORT; off when unset). The API serves its own
    #: on its port.
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log_level: Annotated[str, variable("LOG_LEVEL")] = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngestionSettings:
        environ = os.environ if environ is None else environ
        if not environ.get("DATABASE_URL", "").strip():
            raise ConfigError("DATABASE_URL is required (make up starts a private PostgreSQL)")
        return read_env(
            cls,
            environ,
            keys=KeyStore.from_env(environ),
            metrics=read_env(MetricsSettings, environ),
        )
