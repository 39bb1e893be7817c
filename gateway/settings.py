"""Settings of the gateway, read from the environment at the entry point only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from embedpipe.auth import KeyStore
from embedpipe.envconfig import read_env, variable

MiB = 1024 * 1024


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway listens and how it reaches the embedding server."""

    host: Annotated[str, variable("GATEWAY_HOST")] = "127.0.0.1"
    port: Annotated[int, variable("GATEWAY_PORT", ge=0, le=65535)] = 8080
    embedding_target: Annotated[str, variable("EMBEDDING_GRPC_TARGET")] = "127.0.0.1:50051"
    #: Largest request body; aiohttp's default of 1 MB is too small for real batches.
    max_body_bytes: Annotated[int, variable("GATEWAY_MAX_BODY_BYTES", ge=1)] = 64 * MiB
    #: A request's time budget; it becomes the gRPC deadline (a smaller
    #: `X-Request-Timeout` header, in seconds, shortens it).
    request_timeout_s: Annotated[float, variable("GATEWAY_REQUEST_TIMEOUT_S", ge=0.001)] = 30.0
    grpc_max_message_bytes: Annotated[int, variable("GATEWAY_GRPC_MAX_MESSAGE_BYTES", ge=1)] = (
        64 * MiB
    )
    #: Retry-After sent with a 503 when the upstream does not say.
    unavailable_retry_after_s: Annotated[
        int, variable("GATEWAY_UNAVAILABLE_RETRY_AFTER_S", ge=1)
    ] = 1
    #: API keys (`EMBEDPIPE_API_KEYS`): when set, the gateway refuses a request without a
    #: valid key before reading its body; the embedding server checks it again either way.
    keys: KeyStore = field(default_factory=KeyStore)
    log_level: Annotated[str, variable("LOG_LEVEL")] = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        environ = os.environ if environ is None else environ
        return read_env(cls, environ, keys=KeyStore.from_env(environ))
