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
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from embedpipe.auth import KeyStore
from embedpipe.bundled_model import DEFAULT_MODEL, MAX_INPUT_TOKENS
from embedpipe.envconfig import ConfigError, config_error, read_env, variable
from embedpipe.metrics import MetricsSettings

ProviderKind = Literal["local", "openai"]

#: Callback queues a caller may name: `<service>:callbacks:<name>`, nothing else. Braces are
#: allowed so that on Redis Cluster the name can carry the job keys' hash tag, e.g. `{ep}`.
DEFAULT_CALLBACK_QUEUE_PATTERN = r"[a-z][a-z0-9_-]{0,63}:callbacks:[A-Za-z0-9_.{}-]{1,128}"


#: What a local model is asked to compute in (embedding/providers/local.py).
PrecisionSetting = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model registry: a served name and how to run it."""

    #: Unknown keys in EMBEDDING_MODELS are refused, naming them.
    __pydantic_config__ = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    provider: ProviderKind
    #: local: a directory with model.onnx and tokenizer.json; empty means the bundled model.
    path: str = ""
    #: Vector size; for local models read from the ONNX graph when 0.
    dimensions: Annotated[int, Field(ge=0)] = 0
    max_input_tokens: Annotated[int, Field(ge=1)] = MAX_INPUT_TOKENS
    #: local: `auto` computes in bf16 where the CPU does so natively, else fp32; `fp32` always.
    precision: PrecisionSetting = "auto"
    #: Largest number of inputs per provider call.
    max_batch_size: Annotated[int, Field(ge=1)] = 32
    #: openai: the upstream's model name (defaults to `name`), endpoint and key variable.
    upstream_model: str = ""
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    #: Resolved from `api_key_env` by `EmbeddingSettings.from_env`; never printed.
    api_key: str = field(default="", repr=False)
    supports_dimensions: bool = False
    max_concurrency: Annotated[int, Field(ge=1)] = 4
    #: openai: seconds one upstream request may take, first byte sent to last byte read;
    #: past it the request is abandoned as PROVIDER_TIMEOUT (transient, so retried).
    timeout_s: Annotated[float, Field(gt=0)] = 60.0


_MODEL_LIST = TypeAdapter(list[ModelSpec])


#: What an openai entry means when it leaves these out.
_OPENAI_DEFAULTS = {"max_batch_size": 2048, "max_input_tokens": 8192, "supports_dimensions": True}


def parse_model_registry(text: str, environ: Mapping[str, str]) -> tuple[ModelSpec, ...]:
    """Parse `EMBEDDING_MODELS`: a JSON list of ModelSpec objects.

    An openai model's key is read from the variable its `api_key_env` names.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"EMBEDDING_MODELS is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError("EMBEDDING_MODELS must be a non-empty JSON list")
    items = []
    for index, item in enumerate(data):
        if isinstance(item, dict) and "api_key" in item:
            raise ConfigError(
                f"EMBEDDING_MODELS[{index}].api_key: keys are never configured inline; "
                "name the variable that holds it in api_key_env"
            )
        openai = isinstance(item, dict) and item.get("provider") == "openai"
        items.append({**_OPENAI_DEFAULTS, **item} if openai else item)
    try:
        specs = _MODEL_LIST.validate_python(items)
    except ValidationError as exc:
        raise config_error(exc, where="EMBEDDING_MODELS") from None
    for index, spec in enumerate(specs):
        if spec.provider == "openai" and spec.dimensions <= 0:
            raise ConfigError(
                f"EMBEDDING_MODELS[{index}].dimensions must be set for an openai model"
            )
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError("EMBEDDING_MODELS has duplicate model names")
    return tuple(
        replace(spec, api_key=environ.get(spec.api_key_env, ""))
        if spec.provider == "openai"
        else spec
        for spec in specs
    )


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_chunks: Annotated[int, variable("EMBEDDING_MAX_CHUNKS", ge=1)] = 2048
    max_text_chars: Annotated[int, variable("EMBEDDING_MAX_TEXT_CHARS", ge=1)] = 100_000
    max_request_chars: Annotated[int, variable("EMBEDDING_MAX_REQUEST_CHARS", ge=1)] = 16_000_000
    max_id_chars: int = 256
    max_embed_inputs: Annotated[int, variable("EMBEDDING_MAX_EMBED_INPUTS", ge=1)] = 2048


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker consumes the job stream."""

    consumer_name: Annotated[str, variable("EMBEDDING_WORKER_NAME")] = field(
        default_factory=_consumer_name
    )
    read_count: Annotated[int, variable("EMBEDDING_WORKER_READ_COUNT", ge=1)] = 16
    block_ms: Annotated[int, variable("EMBEDDING_WORKER_BLOCK_MS", ge=1)] = 1000
    claim_idle_ms: Annotated[int, variable("EMBEDDING_CLAIM_IDLE_MS", ge=100)] = 30_000
    max_deliveries: Annotated[int, variable("EMBEDDING_MAX_DELIVERIES", ge=1)] = 5
    #: Padded tokens per model call; attention memory grows with batch x length², and
    #: 2048 keeps a worker's peak RSS low with no loss of throughput (bench/).
    batch_token_budget: Annotated[int, variable("EMBEDDING_BATCH_TOKEN_BUDGET", ge=1)] = 2048
    provider_max_retries: Annotated[int, variable("EMBEDDING_PROVIDER_MAX_RETRIES", ge=0)] = 5
    retry_base_s: Annotated[float, variable("EMBEDDING_RETRY_BASE_S", ge=0)] = 0.5
    retry_max_s: Annotated[float, variable("EMBEDDING_RETRY_MAX_S", ge=0)] = 30.0


@dataclass(frozen=True)
class EmbeddingSettings:
    """Everything the server and the workers need to run."""

    redis_url: Annotated[str, variable("REDIS_URL")] = "redis://127.0.0.1:6379/0"
    key_prefix: Annotated[str, variable("EMBEDDING_KEY_PREFIX")] = "embedding"
    grpc_host: Annotated[str, variable("EMBEDDING_GRPC_HOST")] = "127.0.0.1"
    grpc_port: Annotated[int, variable("EMBEDDING_GRPC_PORT", ge=0, le=65535)] = 50051
    grpc_max_message_bytes: Annotated[int, variable("EMBEDDING_GRPC_MAX_MESSAGE_BYTES", ge=1)] = (
        64 * 1024 * 1024
    )
    grace_s: Annotated[float, variable("EMBEDDING_GRACE_S", ge=0)] = 10.0
    models: tuple[ModelSpec, ...] = (ModelSpec(name=DEFAULT_MODEL, provider="local"),)
    #: EMBEDDING_DEFAULT_MODEL, else the first of `models`.
    default_model: str = DEFAULT_MODEL
    callback_queue_pattern: Annotated[str, variable("EMBEDDING_CALLBACK_QUEUE_PATTERN")] = (
        DEFAULT_CALLBACK_QUEUE_PATTERN
    )
    idempotency_ttl_s: Annotated[int, variable("EMBEDDING_IDEMPOTENCY_TTL_S", ge=1)] = 7 * 24 * 3600
    limits: Limits = field(default_factory=Limits)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    #: `GET /metrics` of the server or the worker (METRICS_PORT; off when unset).
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log_level: Annotated[str, variable("LOG_LEVEL")] = "INFO"
    #: API keys of the tenants; empty means authentication is off (development only).
    keys: KeyStore = field(default_factory=KeyStore)
    #: Calls per second a tenant may make on average, and in a burst; 0 turns it off.
    rate_limit_per_s: Annotated[float, variable("EMBEDDING_RATE_LIMIT_PER_S", ge=0)] = 100.0
    rate_limit_burst: Annotated[int, variable("EMBEDDING_RATE_LIMIT_BURST", ge=1)] = 200
    #: Jobs waiting or in progress past which new jobs are refused (UNAVAILABLE, retry later).
    max_backlog: Annotated[int, variable("EMBEDDING_MAX_BACKLOG", ge=1)] = 100_000

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
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmbeddingSettings:
        """Read every setting from `environ` (default: the process environment)."""
        environ = os.environ if environ is None else environ
        models = cls.models
        if environ.get("EMBEDDING_MODELS", "").strip():
            models = parse_model_registry(environ["EMBEDDING_MODELS"], environ)
        return read_env(
            cls,
            environ,
            models=models,
            default_model=environ.get("EMBEDDING_DEFAULT_MODEL", "").strip() or models[0].name,
            limits=read_env(Limits, environ),
            worker=read_env(WorkerSettings, environ),
            metrics=read_env(MetricsSettings, environ),
            keys=KeyStore.from_env(environ),
        )
