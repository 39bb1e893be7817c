"""Soak: the whole stack under load while its embedding workers are SIGKILLed (and, if asked,
Redis restarted), counted; tests/support/soak.py says what is done and counted.

Exits 0 when nothing was lost and every job had exactly one effect, 1 otherwise.

    .venv/bin/python -m bench.soak [--duration 600] [--jobs 10000] [--kill-every 2]
                                   [--restart-redis-every 0] [--redis-down 2]
                                   [--workers 2] [--in-flight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.support.soak import SoakConfig, soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of sending")
    parser.add_argument("--jobs", type=int, default=10_000, help="stop sending after this many")
    parser.add_argument(
        "--kill-every", type=float, default=2.0, help="seconds between kills (0: none)"
    )
    parser.add_argument(
        "--restart-redis-every", type=float, default=0.0, help="seconds between Redis restarts"
    )
    parser.add_argument(
        "--redis-down", type=float, default=2.0, help="seconds Redis stays down each time"
    )
    parser.add_argument("--workers", type=int, default=2, help="embedding workers")
    parser.add_argument("--in-flight", type=int, default=8, help="uploads in flight")
    args = parser.parse_args(argv)
    config = SoakConfig(
        jobs=args.jobs,
        duration_s=args.duration,
        kill_every_s=args.kill_every or None,
        redis_restart_every_s=args.restart_redis_every or None,
        redis_down_s=args.redis_down,
        workers=args.workers,
        in_flight=args.in_flight,
    )
    with tempfile.TemporaryDirectory(prefix="embedpipe-soak-") as workdir:
        try:
            figures = asyncio.run(soak(config, Path(workdir)))
        except KeyboardInterrupt:
            return 130
    print(figures.report())
    for task_id, reason in list(figures.failed.items())[:10]:
        print(f"  failed task {task_id}: {reason}")
    return 0 if figures.held else 1


if __name__ == "__main__":
    sys.exit(main())
