"""Request validation: every bad field of a request, named, in one pass."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from embedding.errors import EmbeddingError
from embedding.providers.base import EmbeddingProvider
from embedding.providers.registry import ProviderRegistry
from embedding.settings import Limits
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.violations import FieldViolation

#: Up to this many characters, tokens are counted on the event loop (well under a ms).
INLINE_TOKENIZE_CHARS = 16_384

_ID_FIELDS = ("document_id", "collection_id", "tenant_id", "task_id")
#: Names the allowed pattern may match but that are no callback queue: the ingestion
#: service keeps its dead-letter list (`<prefix>:callbacks:dead`), consumer heartbeats
#: (`<prefix>:callbacks:consumers`) and in-flight lists (`<prefix>:callbacks:processing:
#: <consumer>`) there; nobody may push callbacks into them, whatever the pattern allows.
RESERVED_QUEUE_NAME = re.compile(r"(^|:)callbacks:(dead|consumers|processing)(:|$)")


def _check_ids(request: pb.GenerateEmbeddingsRequest, limits: Limits) -> list[FieldViolation]:
    violations = []
    for name in _ID_FIELDS:
        value: str = getattr(request, name)
        if not value.strip():
            violations.append(FieldViolation(name, "is required"))
        elif len(value) > limits.max_id_chars:
            violations.append(FieldViolation(name, f"is longer than {limits.max_id_chars} chars"))
    return violations


def _check_chunks(request: pb.GenerateEmbeddingsRequest, limits: Limits) -> list[FieldViolation]:
    chunks = request.chunks
    if not chunks:
        return [FieldViolation("chunks", "must hold at least one chunk")]
    if len(chunks) > limits.max_chunks:
        return [
            FieldViolation(
                "chunks", f"holds {len(chunks)} chunks; the limit is {limits.max_chunks}"
            )
        ]
    violations = []
    first_index: dict[str, int] = {}
    total_chars = 0
    for i, chunk in enumerate(chunks):
        if not chunk.chunk_id.strip():
            violations.append(FieldViolation(f"chunks[{i}].chunk_id", "is required"))
        elif len(chunk.chunk_id) > limits.max_id_chars:
            violations.append(
                FieldViolation(
                    f"chunks[{i}].chunk_id", f"is longer than {limits.max_id_chars} chars"
                )
            )
        elif chunk.chunk_id in first_index:
            violations.append(
                FieldViolation(
                    f"chunks[{i}].chunk_id",
                    f"duplicates chunks[{first_index[chunk.chunk_id]}].chunk_id {chunk.chunk_id!r}",
                )
            )
        else:
            first_index[chunk.chunk_id] = i
        if not chunk.text.strip():
            violations.append(FieldViolation(f"chunks[{i}].text", "must not be empty"))
        elif len(chunk.text) > limits.max_text_chars:
            violations.append(
                FieldViolation(
                    f"chunks[{i}].text",
                    f"has {len(chunk.text)} chars; the limit is {limits.max_text_chars}",
                )
            )
        total_chars += len(chunk.text)
    if total_chars > limits.max_request_chars:
        violations.append(
            FieldViolation(
                "chunks",
                f"carry {total_chars} chars in all; the limit is {limits.max_request_chars}",
            )
        )
    return violations


async def _check_token_lengths(
    provider: EmbeddingProvider, texts: Sequence[str], field: str
) -> list[FieldViolation]:
    """Inputs longer than the model reads. Only texts the provider's cheap bound does not
    clear are counted, off the event loop when they are long."""
    limit = provider.spec.max_input_tokens
    unsure = [
        i for i, text in enumerate(texts) if (bound := provider.token_bound(text)) is None
        or bound > limit
    ]  # fmt: skip
    if not unsure:
        return []
    counted = [texts[i] for i in unsure]
    if sum(len(t) for t in counted) <= INLINE_TOKENIZE_CHARS:
        # Small requests (the common case): a thread hop would cost more than the work.
        counts = provider.count_tokens(counted)
    else:
        counts = await asyncio.to_thread(provider.count_tokens, counted)
    return [
        FieldViolation(
            field.format(i=i),
            f"has {count} tokens; model {provider.spec.name!r} reads at most {limit}",
        )
        for i, count in zip(unsure, counts, strict=True)
        if count > limit
    ]


def _check_model(registry: ProviderRegistry, model: str) -> list[FieldViolation]:
    if registry.has(model):
        return []
    served = ", ".join(registry.served())
    return [FieldViolation("model", f"unknown model {model!r}; served: {served}")]


def _check_dimensions(provider: EmbeddingProvider, dimensions: int) -> list[FieldViolation]:
    """Output dimensions the model can give: its own, or fewer if it can shorten."""
    native, name = provider.dimensions, provider.spec.name
    if dimensions <= 0:
        return [FieldViolation("dimensions", "must be positive")]
    if not provider.spec.supports_dimensions and dimensions != native:
        return [FieldViolation("dimensions", f"model {name!r} has fixed {native} dimensions")]
    if dimensions > native:
        return [FieldViolation("dimensions", f"model {name!r} has at most {native} dimensions")]
    return []


async def validate_generate(
    request: pb.GenerateEmbeddingsRequest,
    *,
    registry: ProviderRegistry,
    limits: Limits,
    callback_queue_pattern: re.Pattern[str],
) -> None:
    """Raise an INVALID_ARGUMENT `EmbeddingError` naming every bad field."""
    violations = _check_ids(request, limits) + _check_chunks(request, limits)
    violations += _check_model(registry, request.model)
    if not request.callback_queue:
        violations.append(FieldViolation("callback_queue", "is required"))
    elif not callback_queue_pattern.fullmatch(request.callback_queue):
        violations.append(
            FieldViolation(
                "callback_queue",
                f"{request.callback_queue!r} is not an allowed queue name "
                f"(pattern {callback_queue_pattern.pattern})",
            )
        )
    elif RESERVED_QUEUE_NAME.search(request.callback_queue):
        violations.append(
            FieldViolation(
                "callback_queue",
                f"{request.callback_queue!r} is not an allowed queue name "
                "(reserved for the ingestion service's own lists)",
            )
        )
    if not violations and request.HasField("dimensions"):
        violations = _check_dimensions(registry.get(request.model), request.dimensions)
    if not violations:
        violations = await _check_token_lengths(
            registry.get(request.model), [c.text for c in request.chunks], "chunks[{i}].text"
        )
    if violations:
        raise EmbeddingError.invalid(violations)


async def validate_embed(
    request: pb.EmbedRequest, *, registry: ProviderRegistry, limits: Limits
) -> None:
    """Raise an INVALID_ARGUMENT `EmbeddingError` naming every bad field."""
    violations: list[FieldViolation] = []
    if not request.inputs:
        violations.append(FieldViolation("inputs", "must hold at least one input"))
    elif len(request.inputs) > limits.max_embed_inputs:
        violations.append(
            FieldViolation(
                "inputs",
                f"holds {len(request.inputs)} inputs; the limit is {limits.max_embed_inputs}",
            )
        )
    for i, text in enumerate(request.inputs):
        if not text.strip():
            violations.append(FieldViolation(f"inputs[{i}]", "must not be empty"))
        elif len(text) > limits.max_text_chars:
            violations.append(
                FieldViolation(
                    f"inputs[{i}]", f"has {len(text)} chars; the limit is {limits.max_text_chars}"
                )
            )
    violations += _check_model(registry, request.model)
    if not violations and request.HasField("dimensions"):
        violations = _check_dimensions(registry.get(request.model), request.dimensions)
    if not violations and not request.truncate:
        violations = await _check_token_lengths(
            registry.get(request.model), list(request.inputs), "inputs[{i}]"
        )
    if violations:
        raise EmbeddingError.invalid(violations)
