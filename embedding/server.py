"""The gRPC Embedding Service: validates, enqueues and answers; embeds only for `Embed`.

`create_server(settings)` builds a server bound to its port without running it, so tests
bind port 0; `serve(settings)` runs one until SIGTERM or SIGINT, then stops gracefully:
health goes NOT_SERVING, new calls are refused and calls in flight get `grace_s` to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from embedding.core import embed_texts
from embedding.errors import EmbeddingError, ErrorCode
from embedding.grpc_errors import translate
from embedding.jobs import JobQueue
from embedding.keys import EmbeddingKeys
from embedding.metrics import ServerMetrics
from embedding.providers.registry import ProviderRegistry
from embedding.settings import EmbeddingSettings
from embedding.validation import validate_embed, validate_generate
from embedpipe import tracing
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.embedding.v1 import queue_service_pb2 as queue_pb
from embedpipe.embedding.v1 import queue_service_pb2_grpc as queue_grpc
from embedpipe.grpc.errors import ErrorLayer
from embedpipe.grpc.guard import GuardLayer, TenantFrom
from embedpipe.grpc.health import follow_readiness
from embedpipe.grpc.layers import LayeredServer
from embedpipe.grpc.tracing import tracing_layers
from embedpipe.heap import freeze_started_heap
from embedpipe.metrics import ProcessMetrics, serving_metrics
from embedpipe.rate_limit import RateLimiter
from embedpipe.redis_conn import connect
from embedpipe.signals import stop_on_signals

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
QUEUE_SERVICE_NAME = queue_pb.DESCRIPTOR.services_by_name["QueueService"].full_name
HEALTH_INTERVAL_S = 2.0
#: What a caller of ListModels is told to wait while the models load.
MODELS_LOADING_RETRY_S = 1.0
#: The status of every job GenerateEmbeddings answers for.
ACCEPTED = "accepted"

Context = grpc.aio.ServicerContext[object, object]


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    """Translates RPCs into calls on the core; errors are mapped by ErrorLayer."""

    def __init__(
        self,
        settings: EmbeddingSettings,
        registry: ProviderRegistry,
        queue: JobQueue,
        metrics: ServerMetrics,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.queue = queue
        self.metrics = metrics
        self.callback_queue_pattern = re.compile(settings.callback_queue_pattern)

    async def GenerateEmbeddings(
        self, request: pb.GenerateEmbeddingsRequest, context: Context
    ) -> pb.GenerateEmbeddingsResponse:
        await validate_generate(
            request,
            registry=self.registry,
            limits=self.settings.limits,
            callback_queue_pattern=self.callback_queue_pattern,
        )
        request.model = self.registry.resolve_name(request.model)
        accepted = await self.queue.enqueue(request, tracing.traceparent())
        if accepted.deduplicated:
            self.metrics.deduplicated.labels(request.model).inc()
        else:
            self.metrics.accepted.labels(request.model).inc()
            self.metrics.chunks_accepted.labels(request.model).inc(len(request.chunks))
        # DEBUG: at a thousand jobs a second an INFO line each is a real share of the CPU;
        # the worker logs every job it finishes at INFO.
        log.debug(
            "job accepted job_id=%s task_id=%s tenant_id=%s document_id=%s chunks=%d "
            "model=%s deduplicated=%s",
            accepted.job_id,
            request.task_id,
            request.tenant_id,
            request.document_id,
            len(request.chunks),
            request.model,
            accepted.deduplicated,
        )
        accepted_at = Timestamp()
        accepted_at.FromMilliseconds(accepted.accepted_ms)
        return pb.GenerateEmbeddingsResponse(
            job_id=accepted.job_id,
            accepted_time=accepted_at,
            accepted_at=accepted_at,
            task_id=request.task_id,
            chunk_count=len(request.chunks),
            deduplicated=accepted.deduplicated,
            status=ACCEPTED,
        )

    async def Embed(self, request: pb.EmbedRequest, context: Context) -> pb.EmbedResponse:
        await validate_embed(request, registry=self.registry, limits=self.settings.limits)
        provider = self.registry.get(request.model)
        dimensions = request.dimensions if request.HasField("dimensions") else None
        normalize = request.normalize if request.HasField("normalize") else True
        output = await embed_texts(
            provider, list(request.inputs), dimensions=dimensions, normalize=normalize
        )
        return pb.EmbedResponse(
            model=provider.spec.name,
            dimensions=int(output.vectors.shape[1]),
            embeddings=[
                pb.Embedding(index=i, values=row) for i, row in enumerate(output.vectors.tolist())
            ],
            usage=pb.Usage(prompt_tokens=output.prompt_tokens, total_tokens=output.prompt_tokens),
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        if not self.registry.healthy():
            # A model not loaded yet has no dimensions to tell (0): a caller would store that.
            raise EmbeddingError(
                ErrorCode.NOT_READY,
                "the models are still loading; retry shortly",
                retry_after_s=MODELS_LOADING_RETRY_S,
            )
        return pb.ListModelsResponse(
            models=[
                pb.ModelInfo(
                    name=p.spec.name,
                    provider=p.spec.provider,
                    dimensions=p.dimensions,
                    max_input_tokens=p.spec.max_input_tokens,
                    supports_dimensions=p.spec.supports_dimensions,
                    is_default=p.spec.name == self.registry.default_model,
                )
                for p in self.registry
            ]
        )


class QueueServicer(queue_grpc.QueueServiceServicer):
    """The job queue's figures, for monitoring (open to all, like health)."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    async def GetQueueStats(
        self, request: queue_pb.GetQueueStatsRequest, context: Context
    ) -> queue_pb.GetQueueStatsResponse:
        stats = await self.queue.stats()
        return queue_pb.GetQueueStatsResponse(
            jobs_queued=stats.queued,
            jobs_in_progress=stats.in_progress,
            oldest_job_age_seconds=stats.oldest_age_s,
            jobs_dead_lettered=stats.dead_lettered,
        )


@dataclass
class EmbeddingServer:
    """A built server and what it owns; `start` and `stop` run it."""

    grpc_server: grpc.aio.Server
    port: int
    settings: EmbeddingSettings
    registry: ProviderRegistry
    queue: JobQueue
    health: health.aio.HealthServicer
    metrics: ProcessMetrics
    owns_registry: bool = True
    _monitor: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        """Serve; health turns SERVING once the models are loaded and Redis answers."""
        await self.grpc_server.start()
        self._monitor = asyncio.create_task(self._watch_readiness())
        log.info(
            "embedding server listening port=%d models=%s",
            self.port,
            ",".join(self.registry.served()),
        )

    async def _watch_readiness(self) -> None:
        try:
            await self.registry.load_all()
        except Exception:
            log.exception("loading models failed; staying NOT_SERVING")
            return
        await follow_readiness(self.health, ("", SERVICE_NAME), self._ready, HEALTH_INTERVAL_S)

    async def _ready(self) -> bool:
        """Redis answers, the job stream's group exists, and every model is loaded."""
        await self.queue.redis.ping()
        await self.queue.ensure_group()
        return self.registry.healthy()

    async def stop(self, grace_s: float | None = None) -> None:
        """Refuse new calls, give calls in flight `grace_s`, then release everything."""
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(self.settings.grace_s if grace_s is None else grace_s)
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self.owns_registry:
            await self.registry.close_all()
        await self.queue.redis.aclose()
        log.info("embedding server stopped")


async def create_server(
    settings: EmbeddingSettings, *, registry: ProviderRegistry | None = None
) -> tuple[EmbeddingServer, int]:
    """Build (not start) a server bound to `settings.grpc_host:grpc_port` (0 = any free).

    A `registry` passed in stays open when the server stops (its owner closes it).
    """
    owns_registry = registry is None
    registry = registry or ProviderRegistry.from_settings(settings)
    redis = connect(settings.redis_url)
    keys = EmbeddingKeys(settings.key_prefix)
    queue = JobQueue(
        redis, keys, dedupe_ttl_s=settings.idempotency_ttl_s, max_backlog=settings.max_backlog
    )
    limiter = None
    if settings.rate_limit_per_s > 0:
        limiter = RateLimiter(
            redis, keys.rate_limit, per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst
        )
    if not settings.keys.enabled:
        log.warning("no API keys configured (EMBEDPIPE_API_KEYS): authentication is OFF")
    limit = settings.grpc_max_message_bytes
    raw_server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    metrics = ProcessMetrics()
    # The error layer is outside the guard, so it also maps the guard's refusals.
    server = LayeredServer(
        raw_server,
        [
            *tracing_layers(),
            ErrorLayer(translate),
            GuardLayer(SERVICE_NAME, settings.keys, limiter, tenant_from=TenantFrom.REQUEST),
        ],
    )
    pb_grpc.add_EmbeddingServiceServicer_to_server(
        EmbeddingServicer(
            settings, registry, queue, ServerMetrics(metrics, queue, registry.served())
        ),
        server,
    )
    queue_grpc.add_QueueServiceServicer_to_server(QueueServicer(queue), server)
    health_servicer = health.aio.HealthServicer()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, QUEUE_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if port == 0:
        raise OSError(f"cannot bind {settings.grpc_host}:{settings.grpc_port}")
    built = EmbeddingServer(
        server, port, settings, registry, queue, health_servicer, metrics, owns_registry
    )
    return built, port


async def serve(settings: EmbeddingSettings) -> None:
    """Run a server until SIGTERM or SIGINT."""
    server, _port = await create_server(settings)
    await server.start()
    freeze_started_heap()
    async with serving_metrics(server.metrics, settings.metrics):
        await stop_on_signals().wait()
        log.info("stopping embedding server grace_s=%.1f", settings.grace_s)
        await server.stop()
