"""How gRPC does its I/O in our gateway and embedding server: in its own polling, not on
its EventEngine threads.

With EventEngine, every read and write of a call happens on one of gRPC's threads and is
handed to the Python thread; on this 2-core machine those hand-offs (context switches,
`finish_task_switch` in a perf profile) were a fifth of the kernel time. Turning off its
client (the gateway) and listener (the embedding server) saved about 50 and 45 µs of CPU
per accepted job of 550 each (`make bench-gateway`, interleaved runs, 2026-12-04).

gRPC reads the setting once, when it loads: the processes' `__main__` modules set it as
their first statement, `os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)`, so a
value the user set wins.
"""

from __future__ import annotations

GRPC_EXPERIMENTS = "-event_engine_client,-event_engine_listener"
