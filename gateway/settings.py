"""Settings of the gateway, read from the environment at the entry point only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from embedpipe.auth import KeyStore
from embedpipe.envconfig import env_float, env_int, env_str


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway listens and how it reaches the embedding server."""

    host: str = "127.0.0.1"
    port: int = 8080
    embedding_target: str = "127.0.0.1:50051"
    #: Largest request body; aiohttp's default of 1 MB is too small for real batches.
    max_body_bytes: int = 64 * 1024 * 1024
    #: A request's time budget; it becomes the gRPC deadline (a smaller
    #: `X-Request-Timeout` header, in seconds, shortens it).
    request_timeout_s: float = 30.0
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    #: Retry-After sent with a 503 when the upstream does not say.
    unavailable_retry_after_s: int = 1
    #: API keys (`EMBEDPIPE_API_KEYS`): when set, the gateway refuses a request without a
    #: valid key before reading its body; the embedding server checks it again either way.
    keys: KeyStore = field(default_factory=KeyStore)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            host=env_str(env, "GATEWAY_HOST", d.host),
            port=env_int(env, "GATEWAY_PORT", d.port),
            embedding_target=env_str(env, "EMBEDDING_GRPC_TARGET", d.embedding_target),
            max_body_bytes=env_int(env, "GATEWAY_MAX_BODY_BYTES", d.max_body_bytes, minimum=1),
            request_timeout_s=env_float(
                env, "GATEWAY_REQUEST_TIMEOUT_S", d.request_timeout_s, minimum=0.001
            ),
            grpc_max_message_bytes=env_int(
                env, "GATEWAY_GRPC_MAX_MESSAGE_BYTES", d.grpc_max_message_bytes, minimum=1
            ),
            unavailable_retry_after_s=env_int(
                env, "GATEWAY_UNAVAILABLE_RETRY_AFTER_S", d.unavailable_retry_after_s, minimum=1
            ),
            keys=KeyStore.from_env(env),
            log_level=env_str(env, "LOG_LEVEL", d.log_level),
        )
