"""Settings of the Embedding Service, read from the environment at the entry point only.

Every variable, its default and meaning is listed in README.md ("Configuration").
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from embedpipe.auth import KeyStore
from embedpipe.bundled_model import DEFAULT_MODEL, MAX_INPUT_TOKENS
from embedpipe.envconfig import ConfigError, env_float, env_int, env_str

ProviderKind = Literal["local", "openai"]

#: Callback queues a caller may name: `<service>:callbacks:<name>`, nothing else. Braces are
#: allowed so that on Redis Cluster the name can carry the job keys' hash tag, e.g. `{ep}`.
DEFAULT_CALLBACK_QUEUE_PATTERN = r"[a-z][a-z0-9_-]{0,63}:callbacks:[A-Za-z0-9_.{}-]{1,128}"


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model registry: a served name and how to run it."""

    name: str
    provider: ProviderKind
    #: local: a directory with model.onnx and tokenizer.json; empty means the bundled model.
    path: str = ""
    #: Vector size; for local models read from the ONNX graph when 0.
    dimensions: int = 0
    max_input_tokens: int = MAX_INPUT_TOKENS
    #: Largest number of inputs per provider call.
    max_batch_size: int = 32
    #: openai: the upstream's model name (defaults to `name`), endpoint and key variable.
    upstream_model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    #: Resolved from `api_key_env` by `EmbeddingSettings.from_env`; never printed.
    api_key: str = field(default="", repr=False)
    supports_dimensions: bool = False
    max_concurrency: int = 4
    #: openai: seconds one upstream request may take, first byte sent to last byte read;
    #: past it the request is abandoned as PROVIDER_TIMEOUT (transient, so retried).
    timeout_s: float = 60.0


def _model_spec(raw: Mapping[str, Any], index: int) -> ModelSpec:
    where = f"EMBEDDING_MODELS[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name must be a non-empty string")
    provider = raw.get("provider")
    if provider not in ("local", "openai"):
        raise ConfigError(f"{where}.provider must be 'local' or 'openai', got {provider!r}")
    known = set(ModelSpec.__dataclass_fields__) - {"api_key"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    defaults: dict[str, Any] = {}
    if provider == "openai":
        defaults = {"max_batch_size": 2048, "max_input_tokens": 8192, "supports_dimensions": True}
    try:
        spec = ModelSpec(**{**defaults, **raw})
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if spec.provider == "openai" and spec.dimensions <= 0:
        raise ConfigError(f"{where}.dimensions must be set for an openai model")
    return spec


def parse_model_registry(text: str, env: Mapping[str, str]) -> tuple[ModelSpec, ...]:
    """Parse `EMBEDDING_MODELS`: a JSON list of ModelSpec objects.

    An openai model's key is read from the variable its `api_key_env` names.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"EMBEDDING_MODELS is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError("EMBEDDING_MODELS must be a non-empty JSON list")
    specs = tuple(
        replace(spec, api_key=env.get(spec.api_key_env, "")) if spec.provider == "openai" else spec
        for spec in (_model_spec(item, i) for i, item in enumerate(data))
    )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError("EMBEDDING_MODELS has duplicate model names")
    return specs


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_chunks: int = 2048
    max_text_chars: int = 100_000
    max_request_chars: int = 16_000_000
    max_id_chars: int = 256
    max_embed_inputs: int = 2048


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker consumes the job stream."""

    consumer_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    read_count: int = 16
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    #: Padded tokens per model call; attention memory grows with batch x length², and
    #: 2048 keeps a worker's peak RSS low with no loss of throughput (bench/).
    batch_token_budget: int = 2048
    provider_max_retries: int = 5
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0


@dataclass(frozen=True)
class EmbeddingSettings:
    """Everything the server and the workers need to run."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "embedding"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    grace_s: float = 10.0
    models: tuple[ModelSpec, ...] = (ModelSpec(name=DEFAULT_MODEL, provider="local"),)
    default_model: str = DEFAULT_MODEL
    callback_queue_pattern: str = DEFAULT_CALLBACK_QUEUE_PATTERN
    idempotency_ttl_s: int = 7 * 24 * 3600
    limits: Limits = field(default_factory=Limits)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    log_level: str = "INFO"
    #: API keys of the tenants; empty means authentication is off (development only).
    keys: KeyStore = field(default_factory=KeyStore)
    #: Calls per second a tenant may make on average, and in a burst; 0 turns it off.
    rate_limit_per_s: float = 100.0
    rate_limit_burst: int = 200
    #: Jobs waiting or in progress past which new jobs are refused (UNAVAILABLE, retry later).
    max_backlog: int = 100_000

    def __post_init__(self) -> None:
        names = {m.name for m in self.models}
        if self.default_model not in names:
            raise ConfigError(
                f"EMBEDDING_DEFAULT_MODEL {self.default_model!r} is not in EMBEDDING_MODELS"
            )
        try:
            re.compile(self.callback_queue_pattern)
        except re.error as exc:
            raise ConfigError(f"EMBEDDING_CALLBACK_QUEUE_PATTERN is not a regex: {exc}") from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EmbeddingSettings:
        """Read every setting from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        base = cls()
        models = base.models
        if env.get("EMBEDDING_MODELS", "").strip():
            models = parse_model_registry(env["EMBEDDING_MODELS"], env)
        default_model = env_str(env, "EMBEDDING_DEFAULT_MODEL", models[0].name)
        limits = Limits(
            max_chunks=env_int(env, "EMBEDDING_MAX_CHUNKS", Limits.max_chunks, minimum=1),
            max_text_chars=env_int(
                env, "EMBEDDING_MAX_TEXT_CHARS", Limits.max_text_chars, minimum=1
            ),
            max_request_chars=env_int(
                env, "EMBEDDING_MAX_REQUEST_CHARS", Limits.max_request_chars, minimum=1
            ),
            max_embed_inputs=env_int(
                env, "EMBEDDING_MAX_EMBED_INPUTS", Limits.max_embed_inputs, minimum=1
            ),
        )
        w = WorkerSettings()
        worker = WorkerSettings(
            consumer_name=env_str(env, "EMBEDDING_WORKER_NAME", w.consumer_name),
            read_count=env_int(env, "EMBEDDING_WORKER_READ_COUNT", w.read_count, minimum=1),
            block_ms=env_int(env, "EMBEDDING_WORKER_BLOCK_MS", w.block_ms, minimum=1),
            claim_idle_ms=env_int(env, "EMBEDDING_CLAIM_IDLE_MS", w.claim_idle_ms, minimum=100),
            max_deliveries=env_int(env, "EMBEDDING_MAX_DELIVERIES", w.max_deliveries, minimum=1),
            batch_token_budget=env_int(
                env, "EMBEDDING_BATCH_TOKEN_BUDGET", w.batch_token_budget, minimum=1
            ),
            provider_max_retries=env_int(
                env, "EMBEDDING_PROVIDER_MAX_RETRIES", w.provider_max_retries
            ),
            retry_base_s=env_float(env, "EMBEDDING_RETRY_BASE_S", w.retry_base_s),
            retry_max_s=env_float(env, "EMBEDDING_RETRY_MAX_S", w.retry_max_s),
        )
        return cls(
            redis_url=env_str(env, "REDIS_URL", base.redis_url),
            key_prefix=env_str(env, "EMBEDDING_KEY_PREFIX", base.key_prefix),
            grpc_host=env_str(env, "EMBEDDING_GRPC_HOST", base.grpc_host),
            grpc_port=env_int(env, "EMBEDDING_GRPC_PORT", base.grpc_port),
            grpc_max_message_bytes=env_int(
                env, "EMBEDDING_GRPC_MAX_MESSAGE_BYTES", base.grpc_max_message_bytes, minimum=1
            ),
            grace_s=env_float(env, "EMBEDDING_GRACE_S", base.grace_s),
            models=models,
            default_model=default_model,
            callback_queue_pattern=env_str(
                env, "EMBEDDING_CALLBACK_QUEUE_PATTERN", base.callback_queue_pattern
            ),
            idempotency_ttl_s=env_int(
                env, "EMBEDDING_IDEMPOTENCY_TTL_S", base.idempotency_ttl_s, minimum=1
            ),
            limits=limits,
            worker=worker,
            log_level=env_str(env, "LOG_LEVEL", base.log_level),
            keys=KeyStore.from_env(env),
            rate_limit_per_s=env_float(env, "EMBEDDING_RATE_LIMIT_PER_S", base.rate_limit_per_s),
            rate_limit_burst=env_int(
                env, "EMBEDDING_RATE_LIMIT_BURST", base.rate_limit_burst, minimum=1
            ),
            max_backlog=env_int(env, "EMBEDDING_MAX_BACKLOG", base.max_backlog, minimum=1),
        )
