"""Reciprocal rank fusion: rankings of one query by different signals become one.

A chunk at rank r (from 1) of a ranking adds weight / (rrf_k + r) to its score; chunks
found by several rankings add up. Ranks, not scores, are fused: a cosine similarity and a
text rank have no common scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ranking:
    #: The signal, e.g. "vector": each row of the result gets `<name>_rank`.
    name: str
    #: Best first; `chunk_id` with `document_id` names a chunk, `score` is the signal's.
    rows: list[dict[str, Any]]
    weight: float


def fuse(rankings: list[Ranking], *, rrf_k: int, limit: int) -> list[dict[str, Any]]:
    """The `limit` best chunks by fused `score`, each row saying its rank in every ranking
    that found it (and, for the vector ranking, its cosine `similarity`)."""
    fused: dict[tuple[str, str], dict[str, Any]] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking.rows, start=1):
            key = (row["document_id"], row["chunk_id"])
            entry = fused.setdefault(key, {**row, "score": 0.0})
            entry["score"] += ranking.weight / (rrf_k + rank)
            entry[f"{ranking.name}_rank"] = rank
            if ranking.name == "vector":
                entry["similarity"] = row["score"]
    ordered = sorted(
        fused.values(),
        key=lambda row: (-row["score"], row["document_id"], row["position"]),
    )
    return ordered[:limit]
