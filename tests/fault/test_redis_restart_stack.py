"""Redis stopped and started again (same port, its append-only file) every few seconds
under the whole stack while documents are uploaded: every service reconnects by itself,
uploads refused meanwhile are retried by the client, and every accepted document is
stored exactly once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.soak import SoakConfig, soak
from tests.support.soak_checks import assert_each_job_had_one_effect

JOBS = 300


@pytest.mark.timeout(600)
async def test_redis_restarts_under_the_whole_stack_lose_and_repeat_nothing(
    tmp_path: Path, figure: Callable[[str], None]
) -> None:
    # Uploads spread over 20 s meet at least two restarts (at 6 s and 14 s), however fast
    # the machine gets through them.
    config = SoakConfig(
        jobs=JOBS,
        kill_every_s=None,
        redis_restart_every_s=6.0,
        redis_down_s=2.0,
        in_flight=4,
        send_over_s=20.0,
    )
    figures = await soak(config, tmp_path)
    figure(figures.report())
    assert figures.redis_restarts >= 2, "Redis was hardly disturbed; the test proves nothing"
    assert_each_job_had_one_effect(figures, JOBS)
