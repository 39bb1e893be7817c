"""Rankings of one query by different signals, and their reciprocal rank fusion.

A chunk at rank r (from 1) of a ranking adds weight / (rrf_k + r) to its score; chunks
found by several rankings add up. Ranks, not scores, are fused: a cosine similarity and a
text rank have no common scale.
"""

from __future__ import annotations

from typing import Any, Literal

Signal = Literal["vector", "keyword"]


def ranked(signal: Signal, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` (best first) each saying its `<signal>_rank`, and for the vector ranking its
    cosine `similarity` (the row's `score`)."""
    extra = (lambda row: {"similarity": row["score"]}) if signal == "vector" else dict
    return [{**row, **extra(row), f"{signal}_rank": rank} for rank, row in enumerate(rows, start=1)]


def hybrid(
    by_vector: list[dict[str, Any]],
    by_keyword: list[dict[str, Any]],
    *,
    weights: tuple[float, float] = (1.0, 1.0),
    rrf_k: int,
    limit: int,
) -> list[dict[str, Any]]:
    """The `limit` best chunks of both rankings by fused `score`, each row saying its rank
    in every ranking that found it (`chunk_id` with `document_id` names a chunk)."""
    rankings: tuple[tuple[Signal, list[dict[str, Any]], float], ...] = (
        ("vector", by_vector, weights[0]),
        ("keyword", by_keyword, weights[1]),
    )
    fused: dict[tuple[str, str], dict[str, Any]] = {}
    for signal, rows, weight in rankings:
        for row in ranked(signal, rows):
            key = (row["document_id"], row["chunk_id"])
            entry = fused.setdefault(key, {"score": 0.0})
            score = entry["score"] + weight / (rrf_k + row[f"{signal}_rank"])
            entry.update(row, score=score)
    ordered = sorted(
        fused.values(),
        key=lambda row: (-row["score"], row["document_id"], row["position"]),
    )
    return ordered[:limit]
