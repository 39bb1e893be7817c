"""What every soak run under faults must show, whatever the faults were."""

from __future__ import annotations

from tests.support.soak import SoakFigures


def assert_each_job_had_one_effect(figures: SoakFigures, jobs: int) -> None:
    """All `jobs` were sent, none lost or failed, and each stored its vectors once."""
    assert figures.jobs_sent == jobs
    assert figures.lost == 0
    assert not figures.failed, list(figures.failed.items())[:5]
    assert figures.chunks_stored == figures.chunks_expected >= jobs
    assert not figures.effects_off, f"tasks without exactly one effect: {figures.effects_off[:5]}"
