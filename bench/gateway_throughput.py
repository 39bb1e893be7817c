"""Gateway throughput and latency, side by side with a bare aiohttp handler answering 202.

Everything runs on loopback in one run, on a private redis-server as the embedded stack
runs it, append-only with `appendfsync always` (an accepted job is on disk before the 202),
and no worker (accepted jobs just wait in the stream, which is what "accepted" measures):

* the embedding server, `python -m embedding serve` (API key on, rate limit off, a backlog
  bound too large to be reached; one process, as `make up` runs it: with the accepts
  committed in groups, one server beat two on this 2-core machine, 1,341 against 1,159
  accepted/s on 2026-12-04), and the gateway, `python -m gateway`, as child processes;
* a bare aiohttp app as a child process (this module with `--bare-server PORT`) that reads the
  body and answers 202 with a small JSON on the same path: the floor of any aiohttp service.

Phase 1, closed loop at full speed: Debian's `wrk` (-t2 -c<connections>, after a short
warm-up) POSTs seed-shaped JSON (3 chunks of ~50 words, a unique task_id per request, so no
request takes the dedupe path) with `Authorization: Bearer`, first to the bare app, then to
the gateway. Only 202s count as accepted; every other status and socket error is printed.
Also printed: the CPU time each process spent per accepted request.

Phase 2, open loop at a fixed rate (Debian has no wrk2): a load generator child (this module
with `--open-loop URL`) starts each request on a fixed schedule whatever the answers, and
measures latency from the scheduled start, so a stall is not hidden (no coordinated
omission). At the target's half rate (500/s) against both servers, then at half the
gateway's measured maximum if that differs by more than 10%.

The gateway is measured in both phases twice, back to back: with `appendfsync everysec`
(the setting before durable accepts: a machine crash could lose the last second of
accepted jobs) and with `always` (the embedded stack's now; the targets are its), so the
cost of durability shows side by side.

Targets (issue 13): >= 1,500 accepted/s; p99 <= 20 ms at 500/s; <= 1.0 ms of CPU per
accepted job in the gateway and the embedding servers together. Exits 0 whatever the
figures, 1 if the run broke (a server did not start, the gateway accepted nothing), 130 on
Ctrl-C.

    .venv/bin/python -m bench.gateway_throughput [--duration 10] [--connections 16]
                                                 [--threads 2] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.stats import percentile
from embedpipe.heap import freeze_started_heap
from tests.support import processes
from tests.support.child_stack import ChildStack, start_child_stack

GENERATE_PATH = "/api/v1/embeddings/generate"
TENANT = "bench"
API_KEY = "bench-key-not-secret"
CALLBACK_QUEUE = "bench:callbacks:embedding"
TASK_PLACEHOLDER = "__TASK_ID__"
ACCEPTED_TARGET = 1500.0
P99_TARGET_MS = 20.0
#: CPU per accepted job, gateway and embedding servers together.
CPU_PER_JOB_TARGET_MS = 1.0
#: The fixed rate of phase 2, where p99 is held to its target.
HALF_RATE = 500.0
WARMUP_S = 2
REQUEST_TIMEOUT_S = 10
#: Connections the open-loop generator may open; more requests than that wait their turn,
#: which shows in their latency, measured from the scheduled start.
OPEN_LOOP_MAX_CONNECTIONS = 256


# --- payload --------------------------------------------------------------------------


def seed_body(words: int = 50) -> tuple[str, str]:
    """A seed-shaped JSON body split around its task_id: (prefix, suffix)."""
    # Imported here: the bare server and the load generator children need none of it.
    from bench.worker_throughput import make_chunks

    payload = {
        "document_id": "bench-doc",
        "collection_id": "bench-col",
        "tenant_id": TENANT,
        "chunks": [
            {"chunk_id": f"bench-doc:{i}", "text": text, "metadata": {"position": i}}
            for i, text in enumerate(make_chunks(3, words))
        ],
        "model": "all-MiniLM-L6-v2",
        "task_id": TASK_PLACEHOLDER,
        "callback_queue": CALLBACK_QUEUE,
    }
    prefix, suffix = json.dumps(payload).split(TASK_PLACEHOLDER)
    return prefix, suffix


def request_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


# --- the bare server (a child: --bare-server PORT) ------------------------------------


def run_bare_server(port: int) -> None:
    """An aiohttp app answering 202 to POSTs on the gateway's path, until SIGTERM/SIGINT."""
    from aiohttp import web

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"job_id": "bare", "status": "accepted"}, status=202)

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post(GENERATE_PATH, accept)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the open-loop load generator (a child: --open-loop URL) --------------------------


async def open_loop(
    url: str, rate: float, duration_s: float, warmup_s: float, tag: str, body: tuple[str, str]
) -> dict[str, Any]:
    """Start a request every 1/rate s for warmup+duration; stats of the measured ones."""
    import aiohttp

    prefix, suffix = body
    headers = request_headers()
    latencies: list[float] = []
    lags: list[float] = []
    statuses: Counter[str] = Counter()
    total = round((warmup_s + duration_s) * rate)
    first_measured = round(warmup_s * rate)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=OPEN_LOOP_MAX_CONNECTIONS)
    cpu_start, wall_start = time.process_time(), time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Like the servers: a full collection of all the generator imported would pause
        # it ~30 ms, counted as the server's latency.
        freeze_started_heap()
        loop = asyncio.get_running_loop()

        async def one(index: int, scheduled: float) -> None:
            data = f"{prefix}{tag}-{index}{suffix}".encode()
            try:
                async with session.post(url, data=data, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            if index >= first_measured:
                # From the scheduled start: a late start is the server's (or our) delay too.
                latencies.append(loop.time() - scheduled)
                statuses[status] += 1

        tasks: set[asyncio.Task[None]] = set()
        start = loop.time() + 0.05
        for index in range(total):
            scheduled = start + index / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if index >= first_measured:
                lags.append(max(0.0, loop.time() - scheduled))
            task = asyncio.create_task(one(index, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        measured_end = loop.time()
        await asyncio.gather(*tasks)
    latencies.sort()
    lags.sort()
    return {
        "sent": len(latencies),
        "send_rate": len(latencies) / max(1e-9, measured_end - (start + warmup_s)),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
        "lag_p99_ms": percentile(lags, 99) * 1000,
        "statuses": dict(statuses),
        "cpus_busy": (time.process_time() - cpu_start) / (time.monotonic() - wall_start),
    }


# --- child processes ------------------------------------------------------------------


def run_collecting(args: list[str], timeout_s: float) -> str:
    """Run a load generator in its own session to the end; its stdout (SIGKILL on error)."""
    process = subprocess.Popen(
        args,
        cwd=processes.REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"{args[0]} exited with {process.returncode}:\n{err.decode()}")
    return out.decode()


@dataclass
class Stack:
    redis_pid: int
    services: ChildStack
    bare: processes.Child
    gateway_url: str
    bare_url: str


def start_stack(
    children: processes.Children, redis_url: str, redis_pid: int, servers: int
) -> Stack:
    from embedpipe.auth import hash_key
    from embedpipe.redis_server import free_port

    env = processes.service_env(
        REDIS_URL=redis_url,
        EMBEDPIPE_API_KEYS=f"{TENANT}:{hash_key(API_KEY)}",
        EMBEDDING_RATE_LIMIT_PER_S="0",
        EMBEDDING_MAX_BACKLOG="10000000",
    )
    # Several server processes, each its own event loop, behind one round-robin target,
    # so one Python event loop is not the ceiling.
    services = start_child_stack(children, env, embedding_servers=servers, gateway=True)
    bare_port = free_port()
    bare = children.start(
        "bare",
        [sys.executable, "-m", "bench.gateway_throughput", "--bare-server", str(bare_port)],
        env,
    )
    bare_base = f"http://127.0.0.1:{bare_port}"
    processes.wait_ready(
        bare, lambda: processes.http_ready(bare_base + "/readyz"), "GET /readyz 200"
    )
    return Stack(
        redis_pid, services, bare, services.gateway_url + GENERATE_PATH, bare_base + GENERATE_PATH
    )


# --- phase 1: wrk ---------------------------------------------------------------------

_WRK_SCRIPT = """
-- Seed-shaped POSTs, a unique task_id each; counts statuses; prints one BENCH line.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @KEY@"
local prefix = [==[@PREFIX@]==]
local suffix = [==[@SUFFIX@]==]
local tag = "run"
local counter = 0
local threads = {}
local thread_count = 0
codes = {}

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  tag = args[1] or "run"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, prefix .. tag .. "-" .. tid .. "-" .. counter .. suffix)
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("codes")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, status .. ":" .. n)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH duration_us=%.0f requests=%.0f p50_us=%.0f p99_us=%.0f max_us=%.0f "
      .. "connect=%.0f read=%.0f write=%.0f timeout=%.0f codes=%s\\n",
    summary.duration, summary.requests, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.timeout, table.concat(parts, ",")))
end
"""


def wrk_script(body: tuple[str, str]) -> str:
    prefix, suffix = body
    if "]==]" in prefix + suffix:
        raise ValueError("the body cannot be a Lua long string")
    return (
        _WRK_SCRIPT.replace("@KEY@", API_KEY)
        .replace("@PREFIX@", prefix)
        .replace("@SUFFIX@", suffix)
    )


@dataclass
class WrkResult:
    seconds: float
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    codes: dict[int, int]
    socket_errors: dict[str, int]
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def accepted_per_s(self) -> float:
        return self.codes.get(202, 0) / self.seconds

    @property
    def not_accepted(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 202) + sum(
            self.socket_errors.values()
        )


def parse_wrk(output: str) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"no BENCH line in wrk's output:\n{output}")
    values = dict(item.split("=", 1) for item in line.split()[1:])
    codes = {
        int(status): int(n)
        for status, n in (pair.split(":") for pair in values["codes"].split(",") if pair)
    }
    return WrkResult(
        seconds=float(values["duration_us"]) / 1e6,
        requests=int(values["requests"]),
        p50_ms=float(values["p50_us"]) / 1000,
        p99_ms=float(values["p99_us"]) / 1000,
        max_ms=float(values["max_us"]) / 1000,
        codes=codes,
        socket_errors={
            k: int(values[k]) for k in ("connect", "read", "write", "timeout") if int(values[k])
        },
    )


def run_wrk(
    wrk: str, script: Path, url: str, *, threads: int, connections: int, seconds: int, tag: str
) -> str:
    args = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        "-s",
        str(script),
        url,
        "--",
        tag,
    ]
    return run_collecting(args, seconds + REQUEST_TIMEOUT_S + 30)


def closed_loop(
    wrk: str,
    script: Path,
    url: str,
    args: argparse.Namespace,
    tag: str,
    watched: dict[str, int],
) -> WrkResult:
    """A warm-up, then the measured wrk run; CPU seconds of the `watched` pids during it."""
    run_wrk(
        wrk, script, url, threads=args.threads, connections=args.connections,
        seconds=WARMUP_S, tag=f"{tag}-warm",
    )  # fmt: skip
    before = {name: processes.cpu_seconds(pid) for name, pid in watched.items()}
    self_before = os.times()
    output = run_wrk(
        wrk, script, url, threads=args.threads, connections=args.connections,
        seconds=args.duration, tag=tag,
    )  # fmt: skip
    self_after = os.times()
    result = parse_wrk(output)
    result.cpu_s = {
        name: processes.cpu_seconds(pid) - before[name] for name, pid in watched.items()
    }
    # wrk was our child: its CPU time shows in our children's times once it is reaped.
    result.cpu_s["wrk"] = (self_after.children_user + self_after.children_system) - (
        self_before.children_user + self_before.children_system
    )
    return result


# --- phase 2: the open-loop child -----------------------------------------------------


@dataclass
class OpenLoopResult:
    rate: float
    sent: int
    send_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lag_p99_ms: float
    statuses: dict[str, int]
    #: The generator's own CPU time per second of its run: it shares the CPUs with the servers.
    cpus_busy: float

    @property
    def not_accepted(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "202")


def run_open_loop(url: str, rate: float, seconds: int, body_file: Path, tag: str) -> OpenLoopResult:
    args = [
        sys.executable, "-m", "bench.gateway_throughput", "--open-loop", url,
        "--rate", str(rate), "--duration", str(seconds), "--body-file", str(body_file),
        "--tag", tag,
    ]  # fmt: skip
    output = run_collecting(args, seconds + WARMUP_S + REQUEST_TIMEOUT_S + 60)
    data = json.loads(output.strip().splitlines()[-1])
    return OpenLoopResult(rate=rate, **data)


# --- report ---------------------------------------------------------------------------


def print_report(
    args: argparse.Namespace,
    bare: WrkResult,
    gateway: WrkResult,
    fixed: list[tuple[str, OpenLoopResult]],
    relaxed: WrkResult,
) -> None:
    ratio = gateway.accepted_per_s / bare.accepted_per_s if bare.accepted_per_s else 0.0
    print()
    print(
        f"phase 1: closed loop, wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"{os.cpu_count()} CPUs shared by all processes"
    )
    met = gateway.accepted_per_s >= ACCEPTED_TARGET
    report.table(
        [
            *(
                (name, f"{r.accepted_per_s:10.1f}", f"{r.p50_ms:7.2f}", f"{r.p99_ms:7.2f}",
                 f"{r.not_accepted:7}", target)
                for name, r, target in (
                    ("bare aiohttp 202", bare, ""),
                    ("gateway, appendfsync everysec", relaxed, "(before: not durable)"),
                    ("gateway, appendfsync always", gateway,
                     report.against(f">= {ACCEPTED_TARGET:,.0f}/s", met)),
                )
            ),
            ("ratio gateway/bare", f"{ratio:10.3f}", "", "", "", ""),
            ("ratio always/everysec",
             f"{gateway.accepted_per_s / max(relaxed.accepted_per_s, 1e-9):10.3f}",
             "", "", "", ""),
        ],
        ("", "accepted/s", "p50 ms", "p99 ms", "not 202", "target"),
    )  # fmt: skip
    for name, r in (("bare", bare), ("gateway", gateway)):
        other = {k: v for k, v in r.codes.items() if k != 202}
        if other or r.socket_errors:
            print(f"  {name}: other statuses {report.codes(other)} socket errors {r.socket_errors}")
    accepted = gateway.codes.get(202, 0)
    if accepted:
        per = "  ".join(f"{k} {v / accepted * 1e6:.0f}" for k, v in gateway.cpu_s.items())
        print(f"  gateway run, CPU us per accepted request: {per}")
        share = "  ".join(f"{k} {v / gateway.seconds:.2f}" for k, v in gateway.cpu_s.items())
        print(f"  gateway run, CPUs busy: {share}")
        ours = sum(v for k, v in gateway.cpu_s.items() if k not in ("redis", "wrk"))
        per_job_ms = ours / accepted * 1000
        target = report.against(
            f"<= {CPU_PER_JOB_TARGET_MS:.1f} ms", per_job_ms <= CPU_PER_JOB_TARGET_MS
        )
        print(f"  gateway and embedding servers, CPU per accepted job: {per_job_ms:.3f} ms", target)

    print()
    print(
        f"phase 2: open loop at a fixed rate, {args.duration}s measured after {WARMUP_S}s, "
        "latency from the scheduled start"
    )
    rows = []
    for name, o in fixed:
        target = ""
        if name == "gateway, always" and o.rate == args.rate:
            target = report.against(f"p99 <= {P99_TARGET_MS:.0f} ms", o.p99_ms <= P99_TARGET_MS)
        rows.append(
            (name, f"{o.send_rate:10.1f}", f"{o.p50_ms:7.2f}", f"{o.p99_ms:7.2f}",
             f"{o.not_accepted:7}", f"{o.cpus_busy:14.2f}", target)
        )  # fmt: skip
    report.table(rows, ("", "sent/s", "p50 ms", "p99 ms", "not 202", "generator CPUs", "target"))
    for name, o in fixed:
        refused = {k: v for k, v in o.statuses.items() if k != "202"}
        if refused:
            print(f"  {name}: other statuses {report.codes(refused)}")
        if o.lag_p99_ms > 5.0:
            print(f"  {name}: the generator started late, p99 {o.lag_p99_ms:.1f} ms")


# --- main -----------------------------------------------------------------------------


def bench(args: argparse.Namespace, wrk: str) -> int:
    import redis

    from embedpipe.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        workdir = Path(tmp)
        body = seed_body()
        body_file = workdir / "body.json"
        body_file.write_text(json.dumps(list(body)))
        script = workdir / "generate.lua"
        script.write_text(wrk_script(body))
        children = processes.Children(workdir)
        server = RedisServer(workdir / "redis", appendfsync="always")
        try:
            server.start()
            assert server.process is not None
            stack = start_stack(children, server.url, server.process.pid, args.servers)
            print("servers ready", flush=True)
            run = f"b{os.getpid()}"
            gateway_child = stack.services.named("gateway")
            watched = {
                "gateway": gateway_child.process.pid,
                **{e.name: e.process.pid for e in stack.services.embedding_servers},
                "redis": stack.redis_pid,
            }
            bare = closed_loop(wrk, script, stack.bare_url, args, f"{run}-bare", {})
            print(f"bare: {bare.accepted_per_s:.1f} accepted/s", flush=True)
            with redis.Redis.from_url(server.url) as client:

                def fsync(setting: str) -> None:
                    client.config_set("appendfsync", setting)

                # Back to back, the stream about as long for both: the one setting against
                # the other, nothing else changed.
                fsync("everysec")
                relaxed = closed_loop(wrk, script, stack.gateway_url, args, f"{run}-sec", {})
                print(f"gateway, everysec: {relaxed.accepted_per_s:.1f} accepted/s", flush=True)
                fsync("always")
                gateway = closed_loop(wrk, script, stack.gateway_url, args, f"{run}-gw", watched)
                print(f"gateway, always: {gateway.accepted_per_s:.1f} accepted/s", flush=True)
                if not gateway.codes.get(202):
                    print(f"the gateway accepted nothing: {report.codes(gateway.codes)}")
                    for child in (gateway_child, *stack.services.embedding_servers):
                        print(f"--- {child.name} log ---\n{child.tail()}")
                    return 1

                plans = [
                    ("bare", stack.bare_url, args.rate, "always"),
                    ("gateway, everysec", stack.gateway_url, args.rate, "everysec"),
                    ("gateway, always", stack.gateway_url, args.rate, "always"),
                ]
                half_measured = round(gateway.accepted_per_s / 2)
                if abs(half_measured - args.rate) > 0.1 * args.rate:
                    plans.append(
                        ("gateway, always", stack.gateway_url, float(half_measured), "always")
                    )
                fixed: list[tuple[str, OpenLoopResult]] = []
                for name, url, rate, setting in plans:
                    fsync(setting)
                    label = f"{name} at {rate:.0f}/s"
                    tag = f"{run}-{len(fixed)}-{rate:.0f}"
                    result = run_open_loop(url, rate, args.duration, body_file, tag)
                    print(f"{label}: p99 {result.p99_ms:.2f} ms", flush=True)
                    fixed.append((label, result))
            print_report(args, bare, gateway, fixed, relaxed)
        finally:
            children.stop_all()
            server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--rate", type=float, default=HALF_RATE, help="fixed rate, per s (500)")
    parser.add_argument(
        "--servers", type=int, default=1, help="embedding server processes on the port (1)"
    )
    # The children this module starts as itself.
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--open-loop", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--body-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.bare_server is not None:
        run_bare_server(args.bare_server)
        return 0
    if min(args.duration, args.connections, args.threads) < 1 or args.rate <= 0:
        parser.error("all numbers must be positive")
    if args.open_loop is not None:
        if args.body_file is None:
            parser.error("--open-loop needs --body-file")
        prefix, suffix = json.loads(args.body_file.read_text())
        result = asyncio.run(
            open_loop(
                args.open_loop, args.rate, args.duration, WARMUP_S, args.tag, (prefix, suffix)
            )
        )
        print(json.dumps(result))
        return 0

    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 1
    processes.interrupt_on_signals()
    try:
        return bench(args, wrk)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
