"""Packing chunks from several jobs into provider batches by a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """One text to embed: which job and chunk it belongs to, and its token count."""

    job_index: int
    chunk_index: int
    text: str
    tokens: int


def pack_batches(items: Sequence[Item], *, max_items: int, token_budget: int) -> list[list[Item]]:
    """Group items into batches of at most `max_items` and `token_budget` tokens.

    Items are sorted by length first, so texts of similar length share a batch and little
    compute goes into padding. A single item over the budget gets a batch of its own.
    """
    batches: list[list[Item]] = []
    current: list[Item] = []
    for item in sorted(items, key=lambda i: i.tokens):
        # Padding makes a batch cost (its longest item) x (its size); sorted input means
        # the newest item is the longest.
        cost = item.tokens * (len(current) + 1)
        if current and (len(current) >= max_items or cost > token_budget):
            batches.append(current)
            current = []
        current.append(item)
    if current:
        batches.append(current)
    return batches
