"""The search benchmark's vectors: the bundled model's, of the standard library texts of
tests/support/stdlib_texts.py, computed once and kept under data/bench/ (not in git)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedding.providers.local import LocalOnnxProvider
from embedding.settings import ModelSpec
from embedpipe.bundled_model import DEFAULT_MODEL
from tests.support.model_quality import unit_vectors

CACHE = Path("data/bench")


async def vectors(texts: Sequence[str], name: str) -> np.ndarray:
    """The bundled model's unit vectors of `texts`, from the cache when it has them."""
    digest = hashlib.sha256("\x00".join([DEFAULT_MODEL, *texts]).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{digest}.npy"
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    provider = LocalOnnxProvider(ModelSpec(name=DEFAULT_MODEL, provider="local"))
    await provider.load()
    try:
        result = await unit_vectors(provider, texts)
    finally:
        await provider.close()
    _keep(path, result)
    return result


def _keep(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
