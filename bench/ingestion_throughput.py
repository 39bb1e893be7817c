"""Ingestion end to end against the raw local model, and search latency.

Everything runs on loopback in one run, as child processes: a private redis-server, a private
PostgreSQL with pgvector (in a temporary directory), the embedding server
(`python -m embedding serve`), ONE embedding worker, the gateway, the ingestion API and ONE
ingestion worker, with API keys on (a tenant key and the ingestion service's key) and the
rate limit off.

* e2e: N deterministic documents (seeded, ~W words in paragraphs of sentences, nothing
  downloaded) are uploaded as JSON text with 8 uploads in flight, while a WebSocket
  subscribed to all the tenant's tasks listens. The clock runs from the first upload to the
  last "completed" event; chunks are the sum of the completed tasks' `chunks_total`. One
  warm-up document goes through the whole pipeline first, into another collection.
* raw: afterwards (never at the same time: a 2-core machine has no cores to spare), the same
  documents are extracted and chunked in this process exactly as the services do (same
  bytes, `extract_text`, the collection's `Chunker` settings, the bundled tokenizer), the
  chunk ids are checked against the stored ones, and those texts are embedded by the bundled
  model loaded here, packed as the worker packs them (`pack_batches`: sorted by length, at
  most 32 texts and 2,048 padded tokens). Only the embedding is timed, after a warm-up.
* search: the collection is topped up to S live chunks with filler rows inserted directly
  into PostgreSQL (random unit 384-d vectors, live, same tenant and collection); then Q
  sequential `POST .../search` (top_k 5) give p50/p99, next to the query's `Embed` alone.

Prints chunks/s of both, the ratio e2e/raw (target >= 0.85), each process's CPU during e2e,
and the search latencies. Exits 0 whatever the figures, 1 if the run broke (a document lost
or failed, a server did not start), 130 on Ctrl-C.

    .venv/bin/python -m bench.ingestion_throughput [--documents 200] [--words 1500]
                                                   [--search-chunks 10000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.stats import percentile
from embedpipe.postgres_server import PostgresServer
from tests.support import processes
from tests.support.child_stack import start_child_stack
from tests.support.synthetic_text import SEED, make_documents, make_queries, make_sentence

TENANT = "bench"
TENANT_KEY = "bench-tenant-key-not-secret"
SERVICE_KEY = "bench-service-key-not-secret"
COLLECTION = "bench-docs"
WARMUP_COLLECTION = "bench-warmup"
RATIO_TARGET = 0.85
UPLOAD_CONCURRENCY = 8
#: The run is declared broken when no task finishes for this long.
STALL_TIMEOUT_S = 180.0
DIMENSIONS = 384
WARMUP_QUERIES = 10
#: CPUs used by programs outside the run past which its figures are flagged as disturbed.
DISTURBED_CPUS = 0.15


# --- documents ---------------------------------------------------------------------------


def document_id(index: int) -> str:
    return f"doc-{index:05d}"


# --- the stack ---------------------------------------------------------------------------


def system_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes) so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    workdir: Path
    children: processes.Children
    redis_pid: int
    postgres_pid: int
    database_url: str
    grpc_target: str
    ingestion_url: str

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of every process of the stack, and of this one."""
        found = {c.name: processes.cpu_seconds(c.process.pid) for c in self.children.started}
        found["redis"] = processes.cpu_seconds(self.redis_pid)
        found["postgres"] = processes.cpu_seconds(self.postgres_pid, with_children=True)
        me = os.times()
        found["bench (this)"] = me.user + me.system
        return found


def start_stack(
    workdir: Path,
    children: processes.Children,
    redis_url: str,
    redis_pid: int,
    pg: PostgresServer,
) -> Stack:
    from embedpipe.auth import hash_key

    postgres_pid = pg.pid
    assert postgres_pid is not None
    env = processes.service_env(
        REDIS_URL=redis_url,
        DATABASE_URL=pg.url,
        EMBEDPIPE_API_KEYS=f"{TENANT}:{hash_key(TENANT_KEY)},*:{hash_key(SERVICE_KEY)}",
        INGESTION_SERVICE_KEY=SERVICE_KEY,
        EMBEDDING_RATE_LIMIT_PER_S="0",
        INGESTION_RATE_LIMIT_PER_S="0",
        EMBEDDING_WORKER_NAME="bench-embedding-worker",
        INGESTION_WORKER_NAME="bench-ingestion-worker",
    )
    services = start_child_stack(
        children, env, embedding_servers=1, embedding_workers=1, gateway=True, ingestion=True
    )
    return Stack(
        workdir,
        children,
        redis_pid,
        postgres_pid,
        pg.url,
        services.grpc_target,
        services.ingestion_url,
    )


# --- e2e -----------------------------------------------------------------------------------


@dataclass
class E2EResult:
    seconds: float
    uploads_s: float
    first_completed_s: float
    chunks: int
    completed: int
    lost: dict[str, str]
    chunking: tuple[int, int]
    cpu_s: dict[str, float]
    #: CPU seconds of processes outside this run, during it (another program disturbing it).
    other_cpu_s: float


class TaskWatcher:
    """Terminal task events from the WebSocket, with when they arrived."""

    def __init__(self) -> None:
        self.terminal: dict[str, tuple[float, dict[str, Any]]] = {}
        self.changed = asyncio.Event()

    async def listen(self, ws: Any) -> None:
        import aiohttp

        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            status = event.get("status")
            if event.get("type") == "task" and status in ("completed", "failed", "unchanged"):
                self.terminal.setdefault(event["task_id"], (time.perf_counter(), event))
                self.changed.set()

    async def wait_all(self, task_ids: Sequence[str], check: Callable[[], None]) -> None:
        """Until every task is terminal, or nothing finished for STALL_TIMEOUT_S."""
        last_progress = time.monotonic()
        done = 0
        while True:
            now_done = sum(1 for t in task_ids if t in self.terminal)
            if now_done == len(task_ids):
                return
            if now_done > done:
                done, last_progress = now_done, time.monotonic()
            if time.monotonic() - last_progress > STALL_TIMEOUT_S:
                return
            check()
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 1.0)


async def _create_collection(session: Any, base: str, collection_id: str) -> dict[str, Any]:
    async with session.post(
        f"{base}/api/v1/collections", json={"collection_id": collection_id}
    ) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 201:
            raise RuntimeError(f"collection {collection_id}: {response.status} {body}")
        return body


async def _upload(
    session: Any, base: str, collection_id: str, doc_id: str, text: str
) -> tuple[str | None, str]:
    """(task_id, "") on 202, else (None, why)."""
    payload = {"text": text, "document_id": doc_id, "filename": f"{doc_id}.txt"}
    try:
        async with session.post(
            f"{base}/api/v1/collections/{collection_id}/documents", json=payload
        ) as response:
            body = await response.json()
            if response.status != 202:
                return None, f"upload {response.status}: {body}"
            return str(body["task_id"]), ""
    except Exception as exc:
        return None, f"upload failed: {type(exc).__name__}: {exc}"


async def run_e2e(
    stack: Stack, documents: Sequence[str], warmup: str
) -> tuple[E2EResult, dict[str, Any]]:
    import aiohttp

    base = stack.ingestion_url
    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        collection = await _create_collection(session, base, COLLECTION)
        await _create_collection(session, base, WARMUP_COLLECTION)
        watcher = TaskWatcher()
        async with session.ws_connect(f"{base}/api/v1/ws") as ws:
            await ws.send_json({"action": "subscribe", "all": True})
            reply = await ws.receive_json(timeout=10)
            if reply.get("type") != "subscribed":
                raise RuntimeError(f"WebSocket subscribe: {reply}")
            listener = asyncio.create_task(watcher.listen(ws))
            try:
                # Warm-up: one document through the whole pipeline, in another collection.
                task_id, why = await _upload(session, base, WARMUP_COLLECTION, "warmup", warmup)
                if task_id is None:
                    raise RuntimeError(f"warm-up {why}")
                await watcher.wait_all([task_id], stack.children.check_alive)
                if watcher.terminal.get(task_id, (0, {}))[1].get("status") != "completed":
                    raise RuntimeError(f"warm-up document did not complete: {watcher.terminal}")
                print("warm-up document completed; measuring", flush=True)

                result = await _measured_run(stack, session, watcher, documents)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
    return result, collection


async def _measured_run(
    stack: Stack, session: Any, watcher: TaskWatcher, documents: Sequence[str]
) -> E2EResult:
    base = stack.ingestion_url
    semaphore = asyncio.Semaphore(UPLOAD_CONCURRENCY)
    lost: dict[str, str] = {}
    task_of: dict[str, str] = {}

    async def one(index: int) -> None:
        async with semaphore:
            doc_id = document_id(index)
            task_id, why = await _upload(session, base, COLLECTION, doc_id, documents[index])
        if task_id is None:
            lost[doc_id] = why
        else:
            task_of[doc_id] = task_id

    cpu_before, system_before = stack.cpu(), system_busy_seconds()
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(documents))))
    uploads_s = time.perf_counter() - start
    print(f"{len(task_of)} of {len(documents)} uploads accepted in {uploads_s:.1f}s", flush=True)
    await watcher.wait_all(list(task_of.values()), stack.children.check_alive)
    cpu_after, system_after = stack.cpu(), system_busy_seconds()
    cpu_s = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}

    completed_at: list[float] = []
    chunks = 0
    for doc_id, task_id in sorted(task_of.items()):
        arrived = watcher.terminal.get(task_id)
        if arrived is None:
            # No event: ask for the task, so the report says where it stopped.
            async with session.get(f"{base}/api/v1/tasks/{task_id}") as response:
                state = await response.json()
            lost[doc_id] = f"no terminal event; task is {state.get('status')!r}"
            continue
        at, event = arrived
        if event["status"] != "completed":
            lost[doc_id] = (
                f"{event['status']}: {event.get('error_code')} {event.get('error_message')}"
            )
            continue
        completed_at.append(at)
        chunks += int(event["chunks_total"])
    end = max(completed_at) if completed_at else time.perf_counter()
    per_doc = [
        int(watcher.terminal[t][1]["chunks_total"])
        for t in task_of.values()
        if t in watcher.terminal
    ]
    return E2EResult(
        seconds=end - start,
        uploads_s=uploads_s,
        first_completed_s=(min(completed_at) - start) if completed_at else 0.0,
        chunks=chunks,
        completed=len(completed_at),
        lost=lost,
        chunking=(min(per_doc, default=0), max(per_doc, default=0)),
        cpu_s=cpu_s,
        other_cpu_s=max(0.0, system_after - system_before - sum(cpu_s.values())),
    )


# --- raw -------------------------------------------------------------------------------


def chunk_like_the_service(
    documents: Sequence[str], chunk_tokens: int, overlap_tokens: int
) -> list[tuple[str, str]]:
    """(chunk_id, text) of every document, as the API extracts and the worker chunks."""
    from ingestion.chunking import Chunker
    from ingestion.extract import detect_format, extract_text
    from ingestion.worker import load_tokenizer

    chunker = Chunker(load_tokenizer(), chunk_tokens, overlap_tokens)
    chunks: list[tuple[str, str]] = []
    for index, text in enumerate(documents):
        doc_id = document_id(index)
        # The JSON text upload: these bytes, this filename, text/plain.
        data = text.encode()
        fmt = detect_format(f"{doc_id}.txt", "text/plain", data)
        doc = extract_text(data, fmt)
        chunks.extend((c.chunk_id, c.text) for c in chunker.chunk(doc, doc_id))
    return chunks


async def stored_chunk_ids(database_url: str) -> set[str]:
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT chunk_id FROM chunks WHERE tenant_id = $1 AND collection_id = $2 AND live"
            " AND embedding IS NOT NULL",
            TENANT, COLLECTION,
        )  # fmt: skip
    finally:
        await connection.close()
    return {r["chunk_id"] for r in rows}


@dataclass
class RawResult:
    seconds: float
    chunks: int
    batches: int
    mean_tokens: float
    cpus_busy: float
    other_cpus: float


async def run_raw(
    texts: Sequence[str], warmup: Sequence[str], stack_cpu: Callable[[], dict[str, float]]
) -> RawResult:
    """The bundled model in this process over `texts`, packed as the worker packs them."""
    from embedding.batching import Item, pack_batches
    from embedding.core import embed_texts
    from embedding.providers.local import LocalOnnxProvider
    from embedding.settings import ModelSpec, WorkerSettings
    from embedpipe.bundled_model import DEFAULT_MODEL

    provider = LocalOnnxProvider(ModelSpec(name=DEFAULT_MODEL, provider="local"))
    await provider.load()
    budget = WorkerSettings().batch_token_budget
    try:

        def batches_of(chunk_texts: Sequence[str]) -> list[list[str]]:
            counts = provider.count_tokens(chunk_texts)
            items = [
                Item(0, k, t, n) for k, (t, n) in enumerate(zip(chunk_texts, counts, strict=True))
            ]
            packed = pack_batches(items, max_items=provider.max_batch_size, token_budget=budget)
            return [[item.text for item in batch] for batch in packed]

        for batch in batches_of(warmup):
            await embed_texts(provider, batch)
        batches = batches_of(texts)
        tokens = provider.count_tokens(texts)
        cpu_before, system_before = stack_cpu(), system_busy_seconds()
        start = time.perf_counter()
        for batch in batches:
            await embed_texts(provider, batch)
        seconds = time.perf_counter() - start
        cpu_after, system_after = stack_cpu(), system_busy_seconds()
    finally:
        await provider.close()
    ours = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
    other = max(0.0, system_after - system_before - sum(ours.values()))
    return RawResult(
        seconds,
        len(texts),
        len(batches),
        sum(tokens) / max(1, len(tokens)),
        ours["bench (this)"] / seconds,
        other / seconds,
    )


# --- search ----------------------------------------------------------------------------


@dataclass
class SearchResult:
    live_chunks: int
    ingested_chunks: int
    filler_chunks: int
    filler_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    embed_p50_ms: float
    embed_p99_ms: float
    errors: list[str]
    uses_index: bool | None
    other_cpus: float


async def top_up(database_url: str, wanted: int) -> tuple[int, int, float]:
    """(live chunks before, filler rows inserted, seconds): filler documents of 10 chunks
    with random unit vectors, inserted live for the tenant's collection."""
    import asyncpg
    import numpy as np
    from pgvector.asyncpg import register_vector

    connection = await asyncpg.connect(database_url)
    try:
        await register_vector(connection)
        live_count = await connection.fetchval(
            "SELECT count(*) FROM chunks WHERE tenant_id = $1 AND collection_id = $2"
            " AND live AND dimensions = $3",
            TENANT, COLLECTION, DIMENSIONS,
        )  # fmt: skip
        live = int(live_count)
        missing = max(0, wanted - live)
        if not missing:
            return live, 0, 0.0
        rng = random.Random(SEED + 3)
        vectors = np.random.default_rng(SEED + 3).standard_normal((missing, DIMENSIONS))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        per_doc = 10
        chunk_rows = []
        doc_rows = []
        for k in range(missing):
            doc, position = f"filler-{k // per_doc:05d}", k % per_doc
            if position == 0:
                count = min(per_doc, missing - k)
                doc_rows.append(
                    (TENANT, COLLECTION, doc, f"{doc}.txt", "text/plain", "{}", "completed",
                     count, f"task-{doc}")
                )  # fmt: skip
            chunk_rows.append(
                (TENANT, COLLECTION, doc, f"task-{doc}", f"{doc}:{position}", position,
                 make_sentence(rng, 40), json.dumps({"position": position}), vectors[k],
                 DIMENSIONS, True)
            )  # fmt: skip
        start = time.perf_counter()
        async with connection.transaction():
            await connection.copy_records_to_table(
                "documents",
                records=doc_rows,
                columns=["tenant_id", "collection_id", "document_id", "filename", "content_type",
                         "metadata", "status", "chunk_count", "current_task_id"],
            )  # fmt: skip
            await connection.copy_records_to_table(
                "chunks",
                records=chunk_rows,
                columns=["tenant_id", "collection_id", "document_id", "task_id", "chunk_id",
                         "position", "text", "metadata", "embedding", "dimensions", "live"],
            )  # fmt: skip
        await connection.execute("ANALYZE chunks")
        return live, missing, time.perf_counter() - start
    finally:
        await connection.close()


async def uses_hnsw(database_url: str, query: Sequence[float]) -> bool:
    """Whether PostgreSQL plans the search's query (ingestion/store.py) on the HNSW index."""
    import asyncpg
    import numpy as np
    from pgvector import Vector
    from pgvector.asyncpg import register_vector

    connection = await asyncpg.connect(database_url)
    try:
        await register_vector(connection)
        async with connection.transaction():
            await connection.execute("SET LOCAL hnsw.ef_search = 100")
            rows = await connection.fetch(
                f"EXPLAIN SELECT chunk_id FROM chunks WHERE tenant_id = $1 AND collection_id = $2"
                f" AND live AND dimensions = {DIMENSIONS}"
                f" ORDER BY embedding::vector({DIMENSIONS}) <=> $3 LIMIT 5",
                TENANT, COLLECTION, Vector(np.asarray(query, dtype=np.float32)),
            )  # fmt: skip
    finally:
        await connection.close()
    return any("hnsw" in str(r[0]) for r in rows)


async def run_search_requests(
    base: str, queries: Sequence[str], warmup: Sequence[str]
) -> tuple[list[float], list[str]]:
    """Latencies (s) of sequential searches, and the errors."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
    url = f"{base}/api/v1/collections/{COLLECTION}/search"
    latencies: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for index, query in enumerate([*warmup, *queries]):
            start = time.perf_counter()
            async with session.post(url, json={"query": query, "top_k": 5}) as response:
                body = await response.json()
            elapsed = time.perf_counter() - start
            if response.status != 200 or len(body.get("results", [])) != 5:
                errors.append(f"{response.status}: {str(body)[:200]}")
            elif index >= len(warmup):
                latencies.append(elapsed)
    return latencies, errors


def embed_latencies(target: str, queries: Sequence[str]) -> tuple[list[float], list[float]]:
    """Latencies (s) of the search's Embed call alone, sequential; and the last vector."""
    import grpc

    from embedpipe.embedding.v1 import embedding_service_pb2 as pb
    from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc

    metadata = (("authorization", f"Bearer {TENANT_KEY}"),)
    latencies: list[float] = []
    vector: list[float] = []
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        for query in queries:
            start = time.perf_counter()
            reply = stub.Embed(
                pb.EmbedRequest(inputs=[query], truncate=True), timeout=10, metadata=metadata
            )
            latencies.append(time.perf_counter() - start)
            vector = list(reply.embeddings[0].values)
    return latencies, vector


def run_search(stack: Stack, args: argparse.Namespace) -> SearchResult:
    live, filler, filler_s = asyncio.run(top_up(stack.database_url, args.search_chunks))
    how = f", {filler} filler rows inserted directly in {filler_s:.1f}s" if filler else ""
    print(f"search over {live + filler} live chunks ({live} ingested{how})", flush=True)
    queries = make_queries(args.queries)
    warmup = make_queries(WARMUP_QUERIES, seed=SEED + 11)
    cpu_before, system_before, start = stack.cpu(), system_busy_seconds(), time.perf_counter()
    latencies, errors = asyncio.run(run_search_requests(stack.ingestion_url, queries, warmup))
    cpu_after, system_after = stack.cpu(), system_busy_seconds()
    ours = sum(cpu_after.values()) - sum(cpu_before.values())
    other = max(0.0, system_after - system_before - ours) / (time.perf_counter() - start)
    latencies.sort()
    embeds, vector = embed_latencies(stack.grpc_target, [*warmup, *queries])
    embeds = sorted(embeds[len(warmup) :])
    indexed = asyncio.run(uses_hnsw(stack.database_url, vector)) if vector else None
    return SearchResult(
        live_chunks=live + filler,
        ingested_chunks=live,
        filler_chunks=filler,
        filler_s=filler_s,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=(latencies[-1] if latencies else 0.0) * 1000,
        embed_p50_ms=percentile(embeds, 50) * 1000,
        embed_p99_ms=percentile(embeds, 99) * 1000,
        errors=errors,
        uses_index=indexed,
        other_cpus=other,
    )


# --- report ----------------------------------------------------------------------------


def print_report(
    args: argparse.Namespace, e2e: E2EResult, raw: RawResult, search: SearchResult | None
) -> None:
    e2e_cps = e2e.chunks / e2e.seconds if e2e.seconds else 0.0
    raw_cps = raw.chunks / raw.seconds if raw.seconds else 0.0
    ratio = e2e_cps / raw_cps if raw_cps else 0.0
    print()
    print(
        f"{args.documents} documents x ~{args.words} words -> {e2e.chunks} chunks "
        f"({e2e.chunking[0]}-{e2e.chunking[1]} per document, ~{raw.mean_tokens:.0f} tokens each), "
        f"{os.cpu_count()} CPUs shared by all processes"
    )
    verdict = report.against(f">= {RATIO_TARGET:.2f}", ratio >= RATIO_TARGET)
    rows = [
        ("e2e, upload -> last completed", f"{e2e_cps:8.1f} chunks/s", f"{e2e.seconds:.1f} s"),
        ("raw model, in-process", f"{raw_cps:8.1f} chunks/s", f"{raw.seconds:.1f} s"),
        ("ratio e2e/raw", f"{ratio:8.3f}", verdict),
    ]
    if search is not None:
        index = {True: "HNSW index", False: "no index (seq scan)", None: "plan unknown"}[
            search.uses_index
        ]
        rows += [
            (f"search p50, {search.live_chunks} chunks", f"{search.p50_ms:8.1f} ms", index),
            (
                f"search p99, {args.queries} queries",
                f"{search.p99_ms:8.1f} ms",
                f"max {search.max_ms:.1f} ms",
            ),
            (
                "  of which Embed alone, p50",
                f"{search.embed_p50_ms:8.1f} ms",
                f"p99 {search.embed_p99_ms:.1f} ms",
            ),
        ]
    report.table(rows, ("", "measured", "target or note"))
    print(
        f"  e2e: uploads accepted after {e2e.uploads_s:.1f} s, first completed at "
        f"{e2e.first_completed_s:.1f} s"
    )
    busy = "  ".join(
        f"{k} {v / e2e.seconds:.2f}" for k, v in sorted(e2e.cpu_s.items(), key=lambda kv: -kv[1])
    )
    print(f"  e2e, CPUs busy per process: {busy}")
    print(f"  raw, CPUs busy: {raw.cpus_busy:.2f} ({raw.batches} batches)")
    others = {"e2e": e2e.other_cpu_s / e2e.seconds if e2e.seconds else 0.0, "raw": raw.other_cpus}
    if search is not None:
        others["search"] = search.other_cpus
    listed = ", ".join(f"{v:.2f} during {k}" for k, v in others.items())
    print(f"  CPUs busy outside this run: {listed}")
    if max(others.values()) > DISTURBED_CPUS:
        print("  WARNING: other programs used the CPUs meanwhile; rerun on a quiet machine")
    if search is not None and search.filler_chunks:
        print(
            f"  search: {search.ingested_chunks} ingested chunks + {search.filler_chunks} filler "
            "rows inserted directly into PostgreSQL (random unit vectors, live)"
        )
    if search is not None and search.errors:
        print(f"  search: {len(search.errors)} failed requests, first: {search.errors[0]}")


# --- main -----------------------------------------------------------------------------


@contextlib.contextmanager
def _stack(workdir: Path) -> Iterator[Stack]:
    """Every service of the run; all stopped, whatever happens."""
    from embedpipe.redis_server import RedisServer

    children = processes.Children(workdir, tail_lines=30)
    server = RedisServer(workdir / "redis", appendonly=False)
    pg = PostgresServer(workdir / "pg")
    try:
        server.start()
        assert server.process is not None
        pg.start()
        yield start_stack(workdir, children, server.url, server.process.pid, pg)
    finally:
        children.stop_all()
        server.stop()
        pg.stop()


def bench(args: argparse.Namespace) -> int:
    documents = make_documents(args.documents, args.words)
    warmup_doc = make_documents(1, args.words, seed=SEED + 1)[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    try:
        with _stack(workdir) as stack:
            print("services ready", flush=True)
            e2e, collection = asyncio.run(run_e2e(stack, documents, warmup_doc))
            print(
                f"e2e: {e2e.completed} documents, {e2e.chunks} chunks in {e2e.seconds:.1f}s",
                flush=True,
            )
            if e2e.lost:
                for doc_id, why in sorted(e2e.lost.items())[:10]:
                    print(f"lost {doc_id}: {why}")
                print(f"FAILED: {len(e2e.lost)} of {args.documents} documents lost or failed")
                for child in stack.children.started:
                    print(f"--- {child.name} log ---\n{child.tail(10)}")
                return 1

            chunks = chunk_like_the_service(
                documents, collection["chunk_tokens"], collection["overlap_tokens"]
            )
            stored = asyncio.run(stored_chunk_ids(stack.database_url))
            if {c for c, _ in chunks} != stored or len(chunks) != e2e.chunks:
                print(
                    f"FAILED: in-process chunking gives {len(chunks)} chunks, the service "
                    f"stored {len(stored)} ({e2e.chunks} reported); ids differ"
                )
                return 1
            warmup_chunks = [
                t for _, t in chunk_like_the_service(
                    [warmup_doc], collection["chunk_tokens"], collection["overlap_tokens"]
                )
            ]  # fmt: skip
            raw = asyncio.run(run_raw([t for _, t in chunks], warmup_chunks, stack.cpu))
            print(f"raw: {raw.chunks} chunks in {raw.seconds:.1f}s", flush=True)

            search = None if args.queries == 0 else run_search(stack, args)
            print_report(args, e2e, raw, search)
            if args.keep_logs is not None:
                print(f"  services' logs copied to {args.keep_logs}")
    finally:
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy(log, args.keep_logs / log.name)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingestion_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--documents", type=int, default=200, help="documents (200)")
    parser.add_argument("--words", type=int, default=1500, help="words per document (1500)")
    parser.add_argument(
        "--search-chunks", type=int, default=10_000, help="live chunks to search over (10000)"
    )
    parser.add_argument("--queries", type=int, default=200, help="measured searches (200)")
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy the services' logs here at the end"
    )
    args = parser.parse_args(argv)
    if min(args.documents, args.words) < 1 or min(args.search_chunks, args.queries) < 0:
        parser.error("--documents and --words must be >= 1, the others >= 0")
    processes.interrupt_on_signals()
    try:
        return bench(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
