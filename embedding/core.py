"""The embedding core shared by the synchronous Embed RPC and the worker."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embedding.providers.base import EmbeddingProvider, EmbedOutput, Vectors


def l2_normalize(vectors: Vectors) -> Vectors:
    """Scale each row to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalized: Vectors = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalized


async def embed_texts(
    provider: EmbeddingProvider,
    texts: Sequence[str],
    *,
    dimensions: int | None = None,
    normalize: bool = True,
) -> EmbedOutput:
    """Vectors for `texts` from `provider`, L2-normalised unless asked not to."""
    output = await provider.embed(texts, dimensions=dimensions)
    if not normalize:
        return output
    return EmbedOutput(l2_normalize(output.vectors), output.prompt_tokens)
