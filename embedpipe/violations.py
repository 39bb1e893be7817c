"""A bad field of a request and what is wrong with it: the one shape every service and
transport of ours reports bad input in (google.rpc.BadRequest's field violations)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path (e.g. `chunks[2].chunk_id`) and what is wrong with it."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"
