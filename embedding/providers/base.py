"""The interface every embedding provider implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from embedding.settings import ModelSpec

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EmbedOutput:
    """Vectors in input order, shape (n, dimensions), and the tokens they cost."""

    vectors: Vectors
    prompt_tokens: int


class EmbeddingProvider(Protocol):
    """A backend that turns a batch of texts into vectors.

    `embed` must not block the event loop; `count_tokens` must be cheap enough to call
    on every request (it backs validation and batching).
    """

    spec: ModelSpec

    @property
    def dimensions(self) -> int:
        """Length of the vectors `embed` returns when no `dimensions` is asked for."""
        ...

    @property
    def max_batch_size(self) -> int:
        """Most texts one `embed` call should be given."""
        ...

    async def load(self) -> None:
        """Get ready to embed (load weights, open clients)."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Each text's length in the model's tokens, before any truncation."""
        ...

    def token_bound(self, text: str) -> int | None:
        """At least what `count_tokens` says of `text`, found more cheaply, or None when
        there is no cheap bound (validation counts only the texts it cannot clear so)."""
        ...

    async def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> EmbedOutput:
        """Vectors for `texts`; inputs over the model's limit are truncated."""
        ...

    def healthy(self) -> bool:
        """Whether the provider is loaded and able to embed."""
        ...

    async def close(self) -> None:
        """Release what `load` acquired."""
