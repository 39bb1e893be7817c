"""The quality guard of a faster model path: its vectors and search results next to the
fp32 reference's, on the same chunks and questions.

A path passes when every chunk's vector is within `MIN_COSINE` of the reference's and,
searching the chunks with each question, the top `TOP_K` results are the reference's own
(as a set) for at least `MIN_TOP_K_UNCHANGED` of the questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedding.providers.local import LocalOnnxProvider, Precision
from embedding.settings import ModelSpec, PrecisionSetting
from embedpipe.bundled_model import DEFAULT_MODEL
from tests.support.stdlib_texts import labelled_set, passages

MIN_COSINE = 0.99
MIN_TOP_K_UNCHANGED = 0.95
TOP_K = 10


@dataclass(frozen=True)
class GuardSet:
    #: What is searched: documented functions, then plain library chunks.
    chunks: list[str]
    #: The documented functions' summary lines, as a user would ask.
    questions: list[str]


#: Words per passage: about 200 tokens, the size of a RAG chunk.
PASSAGE_WORDS = 80


def guard_set(documents: int, extra: int) -> GuardSet:
    """The first `documents` functions of the labelled set, their questions, and `extra`
    RAG-sized passages of library text around them."""
    labelled = labelled_set()
    chunks = list(labelled.documents.values())[:documents]
    if extra:
        chunks += passages(extra, PASSAGE_WORDS)
    return GuardSet(chunks, [query for query, _ in labelled.queries[:documents]])


async def unit_vectors(provider: LocalOnnxProvider, texts: Sequence[str]) -> np.ndarray:
    """`provider`'s unit vectors of `texts`, in order; similar lengths are batched together,
    as the worker packs them (the least padding)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    result = np.empty((len(texts), provider.dimensions), dtype=np.float32)
    size = provider.max_batch_size
    for start in range(0, len(order), size):
        picked = order[start : start + size]
        embedded = await provider.embed([texts[i] for i in picked])
        result[picked] = np.asarray(embedded.vectors, dtype=np.float32)
    result /= np.linalg.norm(result, axis=1, keepdims=True)
    return result


GuardVectors = tuple[np.ndarray, np.ndarray]


async def guard_vectors(
    precision: PrecisionSetting, guard: GuardSet
) -> tuple[Precision, GuardVectors]:
    """(what the bundled model computed in, its unit vectors of the guard's chunks and of
    its questions) when asked for `precision`."""
    provider = LocalOnnxProvider(
        ModelSpec(name=DEFAULT_MODEL, provider="local", precision=precision)
    )
    await provider.load()
    try:
        chunks = await unit_vectors(provider, guard.chunks)
        return provider.precision, (chunks, await unit_vectors(provider, guard.questions))
    finally:
        await provider.close()


@dataclass(frozen=True)
class Agreement:
    chunks: int
    questions: int
    #: The lowest cosine between a chunk's vector and its reference vector.
    min_cosine: float
    #: Share of questions whose top-k results are the reference's.
    top_k_unchanged: float


def _top_k(questions: np.ndarray, chunks: np.ndarray) -> list[frozenset[int]]:
    ranked = np.argsort(-(questions @ chunks.T), axis=1, kind="stable")[:, :TOP_K]
    return [frozenset(row.tolist()) for row in ranked]


def agreement(reference: GuardVectors, candidate: GuardVectors) -> Agreement:
    """How close `candidate`'s (chunk vectors, question vectors) come to `reference`'s."""
    (ref_chunks, ref_questions), (chunks, questions) = reference, candidate
    cosines = np.sum(ref_chunks * chunks, axis=1)
    same = [
        a == b
        for a, b in zip(_top_k(ref_questions, ref_chunks), _top_k(questions, chunks), strict=True)
    ]
    return Agreement(len(chunks), len(questions), float(cosines.min()), float(np.mean(same)))
