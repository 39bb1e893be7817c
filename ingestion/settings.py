"""Settings of the Ingestion Service, read from the environment at the entry point only."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from embedpipe.auth import KeyStore
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.envconfig import ConfigError, env_float, env_int, env_str


@dataclass(frozen=True)
class IngestionSettings:
    """Where the service listens, what it talks to and its limits."""

    database_url: str
    redis_url: str = "redis://127.0.0.1:6379/0"
    host: str = "127.0.0.1"
    port: int = 8090
    key_prefix: str = "ingestion"
    #: The gateway: `POST {url}/api/v1/embeddings/generate`.
    embedding_service_url: str = "http://127.0.0.1:8080"
    #: The embedding server, for query embeddings and the model list.
    embedding_grpc_target: str = "127.0.0.1:50051"
    #: This service's own key for the gateway: one of tenant "*", allowed to act for any.
    service_key: str = field(default="", repr=False)
    callback_queue: str = "ingestion:callbacks:embedding"
    max_upload_bytes: int = 20 * 1024 * 1024
    default_model: str = DEFAULT_MODEL
    chunk_tokens: int = 200
    overlap_tokens: int = 40
    #: Chunks per GenerateEmbeddings request; a larger document is sent in parts.
    request_chunks: int = 128
    request_timeout_s: float = 30.0
    consumer_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    keys: KeyStore = field(default_factory=KeyStore)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestionSettings:
        env = os.environ if env is None else env
        database_url = env.get("DATABASE_URL", "").strip()
        if not database_url:
            raise ConfigError("DATABASE_URL is required (make up starts a private PostgreSQL)")
        d = cls(database_url=database_url)
        return cls(
            database_url=database_url,
            redis_url=env_str(env, "REDIS_URL", d.redis_url),
            host=env_str(env, "INGESTION_HOST", d.host),
            port=env_int(env, "INGESTION_PORT", d.port),
            key_prefix=env_str(env, "INGESTION_KEY_PREFIX", d.key_prefix),
            embedding_service_url=env_str(env, "EMBEDDING_SERVICE_URL", d.embedding_service_url),
            embedding_grpc_target=env_str(env, "EMBEDDING_GRPC_TARGET", d.embedding_grpc_target),
            service_key=env_str(env, "INGESTION_SERVICE_KEY", ""),
            callback_queue=env_str(env, "EMBEDDING_CALLBACK_QUEUE", d.callback_queue),
            max_upload_bytes=env_int(
                env, "INGESTION_MAX_UPLOAD_BYTES", d.max_upload_bytes, minimum=1
            ),
            default_model=env_str(env, "INGESTION_DEFAULT_MODEL", d.default_model),
            chunk_tokens=env_int(env, "INGESTION_CHUNK_TOKENS", d.chunk_tokens, minimum=16),
            overlap_tokens=env_int(env, "INGESTION_OVERLAP_TOKENS", d.overlap_tokens),
            request_chunks=env_int(env, "INGESTION_REQUEST_CHUNKS", d.request_chunks, minimum=1),
            request_timeout_s=env_float(env, "INGESTION_REQUEST_TIMEOUT_S", d.request_timeout_s),
            consumer_name=env_str(env, "INGESTION_WORKER_NAME", d.consumer_name),
            claim_idle_ms=env_int(env, "INGESTION_CLAIM_IDLE_MS", d.claim_idle_ms, minimum=100),
            max_deliveries=env_int(env, "INGESTION_MAX_DELIVERIES", d.max_deliveries, minimum=1),
            keys=KeyStore.from_env(env),
            log_level=env_str(env, "LOG_LEVEL", d.log_level),
        )
