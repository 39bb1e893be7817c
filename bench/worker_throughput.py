"""Worker throughput against the raw local model, and the worker's peak memory.

On the same deterministic chunks (seeded ~50-word texts, nothing downloaded) it measures:

* raw: the bundled local model (all-MiniLM-L6-v2, int8 ONNX) loaded in this process,
  embedding every chunk in batches of its `max_batch_size`, sorted by token count as the
  worker packs them (so padding favours neither side); only the embedding is timed.
* worker: one real `python -m embedding worker` child on a private redis-server. Once the
  worker is ready (it has joined the consumer group), the chunks are enqueued as N
  seed-shaped GenerateEmbeddings jobs with `JobQueue.enqueue`, and the clock runs until every
  callback is popped from the callback queue. Each chunk id must come back exactly once.

Both phases warm up first on chunks outside the measured set, and run one after the other,
never at once (a 2-core machine has no cores to spare). Prints chunks/s of both, the ratio
worker/raw (target >= 0.90) and the worker's peak RSS, VmHWM (target <= 400 MB). Exits 0
whatever the figures, 1 if a chunk was lost or duplicated.

    .venv/bin/python -m bench.worker_throughput [--chunks 2000] [--words 50] [--jobs 40]
                                                [--repeats 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from bench import report
from embedding.jobs import JobQueue
from embedding.keys import EmbeddingKeys
from embedding.providers.local import LocalOnnxProvider
from embedding.settings import EmbeddingSettings, ModelSpec
from embedpipe.bundled_model import DEFAULT_MODEL
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.redis_server import RedisServer
from tests.support import processes
from tests.support.child_stack import start_child_stack

CALLBACK_QUEUE = "bench:callbacks:embedding"
RATIO_TARGET = 0.90
RSS_TARGET_MB = 400.0
SEED = 20240601

_WORD_TEXT = (
    "the a of and to in is for on with as by at from that this it be are was were has have "
    "data model system network river city market energy policy report study result method "
    "water light sound music garden forest mountain ocean station library museum hospital "
    "school student teacher doctor farmer engineer artist writer council company customer "
    "quickly slowly carefully often rarely always never today yesterday tomorrow nearly "
    "builds measures describes improves reduces supports explains collects shares follows "
    "green quiet early large small modern ancient public private local global careful "
    "rain wind storm summer winter spring autumn morning evening night bridge road train"
)
_WORDS = _WORD_TEXT.split()


def make_chunks(count: int, words: int, *, seed: int = SEED) -> list[str]:
    """`count` texts of about `words` words each, the same for the same seed."""
    rng = random.Random(seed)
    chunks = []
    for _ in range(count):
        n = max(1, words + rng.randint(-words // 10, words // 10))
        picked = [rng.choice(_WORDS) for _ in range(n)]
        sentences, i = [], 0
        while i < n:
            length = rng.randint(6, 14)
            sentence = " ".join(picked[i : i + length])
            sentences.append(sentence[0].upper() + sentence[1:] + ".")
            i += length
        chunks.append(" ".join(sentences))
    return chunks


def split_jobs(texts: Sequence[str], jobs: int) -> list[list[tuple[str, str]]]:
    """(chunk_id, text) lists, one per job, as even as possible."""
    size = -(-len(texts) // jobs)
    return [
        [(f"chunk-{k}", texts[k]) for k in range(start, min(start + size, len(texts)))]
        for start in range(0, len(texts), size)
    ]


def job_request(
    run: str, index: int, chunks: Sequence[tuple[str, str]]
) -> pb.GenerateEmbeddingsRequest:
    """A GenerateEmbeddingsRequest shaped like the seed's example."""
    request = pb.GenerateEmbeddingsRequest(
        document_id=f"{run}-doc-{index}",
        collection_id="bench-col",
        tenant_id="bench-tenant",
        model="",
        task_id=f"{run}-task-{index}",
        callback_queue=CALLBACK_QUEUE,
    )
    for position, (chunk_id, text) in enumerate(chunks):
        chunk = request.chunks.add(chunk_id=chunk_id, text=text)
        chunk.metadata.update({"position": position})
    return request


# --- raw ------------------------------------------------------------------------------


async def _raw_run(provider: LocalOnnxProvider, texts: Sequence[str]) -> float:
    """Seconds to embed `texts` in batches of the model's max batch size."""
    size = provider.max_batch_size
    start = time.perf_counter()
    for i in range(0, len(texts), size):
        await provider.embed(texts[i : i + size])
    return time.perf_counter() - start


async def measure_raw(texts: Sequence[str], warmup: Sequence[str], repeats: int) -> float:
    """Best chunks/s of the in-process model over `repeats` runs."""
    provider = LocalOnnxProvider(ModelSpec(name=DEFAULT_MODEL, provider="local"))
    await provider.load()
    try:
        # Shortest first, as the worker packs its batches: the least padding, the best case.
        counts = provider.count_tokens(texts)
        ordered = [t for _, t in sorted(zip(counts, texts, strict=True), key=lambda p: p[0])]
        await _raw_run(provider, warmup)
        best = min([await _raw_run(provider, ordered) for _ in range(repeats)])
    finally:
        await provider.close()
    return len(texts) / best


# --- worker ---------------------------------------------------------------------------


@dataclass
class WorkerRun:
    chunks_per_s: float
    lost: list[str]
    duplicated: list[str]


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


async def _worker_run(
    queue: JobQueue, redis: aioredis.Redis, run: str, jobs: Sequence[Sequence[tuple[str, str]]]
) -> tuple[float, list[bytes]]:
    """Enqueue `jobs` and wait for all their callbacks: (seconds, raw callbacks)."""
    requests = [job_request(run, i, chunks) for i, chunks in enumerate(jobs)]
    raw: list[bytes] = []
    start = time.perf_counter()
    for request in requests:
        accepted = await queue.enqueue(request)
        assert not accepted.deduplicated, "jobs of a run must be new"
    # Only pop during the clock; decoding waits, so it does not take CPU from the worker.
    deadline = time.monotonic() + 300
    while len(raw) < len(requests):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run}: {len(raw)} of {len(requests)} callbacks in 300s")
        # Short waits: the client's socket timeout would cut a long BRPOP.
        item = await redis.brpop([CALLBACK_QUEUE], timeout=1)
        if item is None:
            continue
        body = item[1]
        raw.append(body if isinstance(body, bytes) else body.encode())
    return time.perf_counter() - start, raw


def _check(raw: Sequence[bytes], expected: Sequence[str]) -> tuple[list[str], list[str]]:
    """(lost, duplicated) chunk ids of a run's callbacks."""
    seen: Counter[str] = Counter()
    for body in raw:
        callback = json.loads(body)
        if callback["status"] != "success":
            print(f"error callback: {callback.get('error_code')} {callback.get('error_message')}")
            continue
        seen.update(e["chunk_id"] for e in callback["embeddings"])
    lost = [c for c in expected if c not in seen]
    duplicated = [c for c, n in seen.items() if n > 1]
    return lost, duplicated


async def measure_worker(
    texts: Sequence[str], warmup: Sequence[str], jobs: int, repeats: int, workdir: Path
) -> tuple[list[WorkerRun], float]:
    """Runs of one worker child over `texts` split into `jobs` jobs, and its peak RSS MB."""
    with RedisServer(workdir / "redis", appendonly=False) as server:
        settings = EmbeddingSettings(redis_url=server.url)
        keys = EmbeddingKeys(settings.key_prefix)
        redis = aioredis.Redis.from_url(server.url)
        queue = JobQueue(redis, keys, dedupe_ttl_s=settings.idempotency_ttl_s)
        await queue.ensure_group()
        env = processes.service_env(
            REDIS_URL=server.url,
            EMBEDDING_WORKER_BLOCK_MS="100",
            EMBEDDING_WORKER_NAME="bench-worker",
        )
        # The worker shares our session and gets 30 s to stop: a Ctrl-C reaches it too.
        children = processes.Children(
            workdir, tail_lines=None, stop_timeout_s=30, new_session=False
        )
        try:
            # It returns once the worker's model is loaded and it reads jobs.
            services = start_child_stack(children, env, embedding_servers=0, embedding_workers=1)
            worker = services.named("embedding-worker-1")
            await _worker_run(queue, redis, "warmup", split_jobs(warmup, 1))
            runs = []
            expected = [f"chunk-{k}" for k in range(len(texts))]
            for r in range(repeats):
                seconds, raw = await _worker_run(queue, redis, f"run{r}", split_jobs(texts, jobs))
                lost, duplicated = _check(raw, expected)
                runs.append(WorkerRun(len(texts) / seconds, lost, duplicated))
            peak_mb = _peak_rss_mb(worker.process.pid)
        finally:
            children.stop_all()
            await redis.aclose()
    return runs, peak_mb


# --- report ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.worker_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chunks", type=int, default=2000, help="chunks to embed (2000)")
    parser.add_argument("--words", type=int, default=50, help="words per chunk (50)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs the chunks are split into")
    parser.add_argument("--repeats", type=int, default=1, help="runs per phase, best counts")
    args = parser.parse_args(argv)
    if min(args.chunks, args.words, args.jobs, args.repeats) < 1:
        parser.error("all numbers must be >= 1")

    texts = make_chunks(args.chunks, args.words)
    warmup = make_chunks(64, args.words, seed=SEED + 1)
    print(
        f"{args.chunks} chunks x ~{args.words} words, {args.jobs} jobs, "
        f"best of {args.repeats}, {os.cpu_count()} CPUs",
        flush=True,
    )

    raw_cps = asyncio.run(measure_raw(texts, warmup, args.repeats))
    gc.collect()
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        runs, peak_mb = asyncio.run(
            measure_worker(texts, warmup, args.jobs, args.repeats, Path(tmp))
        )

    failed = [r for r in runs if r.lost or r.duplicated]
    for r in failed:
        print(f"run lost {len(r.lost)} chunks, duplicated {len(r.duplicated)}")
    worker_cps = max(r.chunks_per_s for r in runs)
    ratio = worker_cps / raw_cps
    report.table(
        [
            ("raw model, in-process", f"{raw_cps:8.1f} chunks/s", ""),
            ("worker via Redis", f"{worker_cps:8.1f} chunks/s", ""),
            (
                "ratio worker/raw",
                f"{ratio:8.3f}",
                report.against(f">= {RATIO_TARGET:.2f}", ratio >= RATIO_TARGET),
            ),
            (
                "worker peak RSS",
                f"{peak_mb:8.1f} MB",
                report.against(f"<= {RSS_TARGET_MB:.0f}", peak_mb <= RSS_TARGET_MB),
            ),
        ],
        ("", "measured", "target"),
    )
    if failed:
        print("FAILED: chunks lost or duplicated")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
