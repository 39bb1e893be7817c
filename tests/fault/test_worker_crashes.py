"""Embedding workers SIGKILLed every ~2 s under 1,000 jobs through the whole stack: every
job has exactly one effect (its vectors stored once), none is lost. The longer version of
this run is `python -m bench.soak`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.soak import SoakConfig, soak
from tests.support.soak_checks import assert_each_job_had_one_effect

JOBS = 1000


@pytest.mark.timeout(600)
async def test_killing_a_worker_every_two_seconds_loses_and_repeats_nothing(
    tmp_path: Path,
    figure: Callable[[str], None],
) -> None:
    figures = await soak(SoakConfig(jobs=JOBS, kill_every_s=2.0, workers=2), tmp_path)
    figure("\n" + figures.report())
    assert figures.kills >= 5, "the workers were hardly disturbed; the test proves nothing"
    assert_each_job_had_one_effect(figures, JOBS)
    assert figures.callbacks_received >= JOBS
    assert figures.dead_lettered == 0
