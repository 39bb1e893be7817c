"""Worker throughput against the raw local model and against a peer, fastembed; the
worker's peak memory.

On the same deterministic texts (seeded, nothing downloaded), at two sizes: short chunks
(~50 words, ~60 tokens) and RAG-sized ones (~170 words, ~200 tokens), it measures:

* raw: the bundled local model (all-MiniLM-L6-v2, int8 ONNX) loaded in this process,
  embedding every chunk in batches of its `max_batch_size`, sorted by token count as the
  worker packs them (so padding favours neither side); only the embedding is timed. In
  fp32, the reference; in bf16 where the CPU has it; and as `auto` runs it, the worker's
  default, which keeps bf16 only where a run timed at load was 1.1x fp32's (the figures
  compared with fastembed are `auto`'s).
* worker: one real `python -m embedding worker` child on a private redis-server. Once the
  worker is ready (it has joined the consumer group), the chunks are enqueued as N
  seed-shaped GenerateEmbeddings jobs with `JobQueue.enqueue`, and the clock runs until every
  callback is popped from the callback queue. Each chunk id must come back exactly once.
* fastembed: the peer, in an environment of its own (bench/fastembed_run.py, made by
  `make bench` under data/bench/), pointed at the same model.onnx and tokenizer.json, the
  same texts in the same order and batch size; its first vectors must be the fp32 ones.

Then the quality guard of tests/support/model_quality.py on more than 1,000 chunks
(documented standard library functions and RAG-sized library passages) and the
functions' summary lines as questions: the bf16 path's lowest cosine to the fp32 vectors
(target >= 0.99) and the share of questions whose top 10 stay the same (>= 0.95); on a
CPU without native bf16 every path is fp32 and there is nothing to guard.

Every phase warms up first on texts outside the measured set; they run one after the
other, never at once (a 2-core machine has no cores to spare). Prints chunks/s and
tokens/s (the tokens the model reads: at most its window) of each, the ratios worker/raw
(target >= 0.90) and raw/fastembed (>= 1.5 on RAG-sized chunks: fastembed runs the model
on onnxruntime in fp32, as embedpipe did before), and the worker's peak RSS, VmHWM (target
<= 400 MB).
Exits 0 whatever the figures, 1 if a chunk was lost or duplicated or fastembed's vectors
differ.

    .venv/bin/python -m bench.worker_throughput [--chunks 2000] [--rag-chunks 500]
        [--jobs 40] [--repeats 1] [--fastembed-python data/bench/fastembed-venv/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

from bench import report
from embedding.core import embed_texts
from embedding.jobs import JobQueue
from embedding.keys import EmbeddingKeys
from embedding.providers.base import Vectors
from embedding.providers.local import LocalOnnxProvider, cpu_computes_bf16
from embedding.settings import EmbeddingSettings, ModelSpec, PrecisionSetting
from embedpipe import bundled_model
from embedpipe.bundled_model import DEFAULT_MODEL, MAX_INPUT_TOKENS
from embedpipe.embedding.v1 import embedding_service_pb2 as pb
from embedpipe.redis_server import RedisServer
from tests.support import processes
from tests.support.child_stack import start_child_stack
from tests.support.model_quality import (
    MIN_COSINE,
    MIN_TOP_K_UNCHANGED,
    TOP_K,
    Agreement,
    agreement,
    guard_set,
    guard_vectors,
)

CALLBACK_QUEUE = "bench:callbacks:embedding"
RATIO_TARGET = 0.90
#: The model's chunks/s over fastembed's, which runs it as embedpipe did before OpenVINO
#: (onnxruntime, fp32), on RAG-sized chunks (issue 13).
SPEEDUP_TARGET = 1.5
RAG_SIZED = "RAG-sized chunks"
#: The quality guard's size: documented functions (all of them) and library passages.
GUARD_DOCUMENTS, GUARD_PASSAGES = 441, 600
RSS_TARGET_MB = 400.0
SEED = 20240601
#: Words of a short chunk and of a RAG-sized one (~1.15 tokens a word with these words).
SHORT_WORDS, RAG_WORDS = 50, 170
#: fastembed's vectors checked against the raw model's, and how close they must be.
PROBE = 16
SAME_VECTOR_COSINE = 0.9999
#: The peer's own environment, made by `make bench`.
FASTEMBED_PYTHON = Path("data/bench/fastembed-venv/bin/python")

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


@dataclass
class RawRun:
    chunks_per_s: float
    #: Tokens the model read (each text's, up to its window) per second.
    tokens_per_s: float
    #: The texts in the order they were embedded (shortest first), and the first vectors.
    ordered: list[str]
    probe: Vectors
    #: What the model computed in.
    precision: str


async def measure_raw(
    texts: Sequence[str],
    warmup: Sequence[str],
    repeats: int,
    precision: PrecisionSetting,
) -> RawRun:
    """Best chunks/s of the in-process model over `repeats` runs."""
    provider = LocalOnnxProvider(
        ModelSpec(name=DEFAULT_MODEL, provider="local", precision=precision)
    )
    await provider.load()
    try:
        # Shortest first, as the worker packs its batches: the least padding, the best case.
        counts = provider.count_tokens(texts)
        ordered = [t for _, t in sorted(zip(counts, texts, strict=True), key=lambda p: p[0])]
        await _raw_run(provider, warmup)
        best = min([await _raw_run(provider, ordered) for _ in range(repeats)])
        probe = (await embed_texts(provider, ordered[:PROBE])).vectors
    finally:
        await provider.close()
    tokens = sum(min(count, MAX_INPUT_TOKENS) for count in counts)
    return RawRun(len(texts) / best, tokens / best, ordered, probe, provider.precision)


# --- fastembed ------------------------------------------------------------------------


def _fastembed_model_dir(directory: Path) -> Path:
    """The bundled model's files where fastembed looks for them, with the tokenizer
    settings it asks for (the model's window)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").symlink_to(bundled_model.model_path())
    (directory / "tokenizer.json").symlink_to(bundled_model.tokenizer_path())
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": MAX_INPUT_TOKENS})
    )
    (directory / "config.json").write_text("{}")
    return directory


def measure_fastembed(
    python: Path, raw: RawRun, warmup: Sequence[str], repeats: int, workdir: Path
) -> tuple[float, float]:
    """(seconds of fastembed's best run over the raw run's texts, the lowest cosine of
    its first vectors to the raw model's)."""
    job = {
        "model_dir": str(_fastembed_model_dir(workdir / "fastembed-model")),
        "batch_size": ModelSpec(name=DEFAULT_MODEL, provider="local").max_batch_size,
        "warmup": list(warmup),
        "texts": raw.ordered,
        "repeats": repeats,
        "probe": PROBE,
    }
    job_file = workdir / "fastembed-job.json"
    job_file.write_text(json.dumps(job))
    script = Path(__file__).with_name("fastembed_run.py")
    done = subprocess.run(
        [str(python), str(script), str(job_file)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"fastembed failed:\n{done.stderr[-2000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    probe = np.array(answer["probe"], dtype=np.float32)
    cosine = float(np.min(np.sum(probe * raw.probe, axis=1)))
    return float(answer["seconds"]), cosine


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


@dataclass
class SizeResult:
    name: str
    raw: RawRun
    raw_fp32: RawRun
    #: None where the CPU has no native bf16.
    raw_bf16: RawRun | None
    worker: list[WorkerRun]
    peak_mb: float
    #: fastembed's chunks/s and the lowest cosine of its vectors to ours (None: not run).
    fastembed: tuple[float, float] | None


def measure_size(
    name: str,
    count: int,
    words: int,
    args: argparse.Namespace,
    python: Path | None,
    bf16: bool,
) -> SizeResult:
    texts = make_chunks(count, words)
    warmup = make_chunks(64, words, seed=SEED + 1)
    print(f"{name}: {count} chunks x ~{words} words", flush=True)
    raw_fp32 = asyncio.run(measure_raw(texts, warmup, args.repeats, "fp32"))
    gc.collect()
    raw_bf16 = None
    if bf16:
        raw_bf16 = asyncio.run(measure_raw(texts, warmup, args.repeats, "bf16"))
        gc.collect()
    raw = asyncio.run(measure_raw(texts, warmup, args.repeats, "auto"))
    gc.collect()
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        runs, peak_mb = asyncio.run(
            measure_worker(texts, warmup, args.jobs, args.repeats, Path(tmp))
        )
        fastembed = None
        if python is not None:
            seconds, cosine = measure_fastembed(python, raw_fp32, warmup, args.repeats, Path(tmp))
            fastembed = (len(texts) / seconds, cosine)
    return SizeResult(name, raw, raw_fp32, raw_bf16, runs, peak_mb, fastembed)


def report_size(result: SizeResult) -> bool:
    """Print one size's table; whether its runs were whole (nothing lost, same vectors)."""
    raw = result.raw
    tokens_per_chunk = raw.tokens_per_s / raw.chunks_per_s
    worker_cps = max(r.chunks_per_s for r in result.worker)
    ratio = worker_cps / raw.chunks_per_s
    fp32, bf16 = result.raw_fp32, result.raw_bf16
    rows = [("raw model, fp32", f"{fp32.chunks_per_s:8.1f}", f"{fp32.tokens_per_s:9.0f}", "")]
    if bf16 is not None:
        rows += [
            ("raw model, bf16", f"{bf16.chunks_per_s:8.1f}", f"{bf16.tokens_per_s:9.0f}", ""),
            ("ratio bf16/fp32", f"{bf16.chunks_per_s / fp32.chunks_per_s:8.3f}", "", ""),
        ]
    rows += [
        (f"raw model, auto (ran {raw.precision})", f"{raw.chunks_per_s:8.1f}",
         f"{raw.tokens_per_s:9.0f}", ""),
        ("worker via Redis", f"{worker_cps:8.1f}", f"{worker_cps * tokens_per_chunk:9.0f}", ""),
        (
            "ratio worker/raw", f"{ratio:8.3f}", "",
            report.against(f">= {RATIO_TARGET:.2f}", ratio >= RATIO_TARGET),
        ),
    ]  # fmt: skip
    print(f"\n{result.name}, ~{tokens_per_chunk:.0f} tokens a chunk")
    whole = True
    if result.fastembed is not None:
        peer_cps, cosine = result.fastembed
        rows += [
            ("fastembed (onnxruntime, fp32)", f"{peer_cps:8.1f}",
             f"{peer_cps * tokens_per_chunk:9.0f}", ""),
            ("ratio raw/fastembed", f"{raw.chunks_per_s / peer_cps:8.3f}", "",
             report.against(f">= {SPEEDUP_TARGET:.1f}",
                            raw.chunks_per_s / peer_cps >= SPEEDUP_TARGET)
             if result.name == RAG_SIZED else "(target on RAG-sized)"),
            ("ratio worker/fastembed", f"{worker_cps / peer_cps:8.3f}", "", ""),
        ]  # fmt: skip
        same = cosine >= SAME_VECTOR_COSINE
        whole = same
        print(f"  fastembed's vectors against the fp32 ones: lowest cosine {cosine:.6f}"
              + ("" if same else "  DIFFERENT"))  # fmt: skip
    rows.append(
        ("worker peak RSS", f"{result.peak_mb:8.1f} MB", "",
         report.against(f"<= {RSS_TARGET_MB:.0f}", result.peak_mb <= RSS_TARGET_MB)),
    )  # fmt: skip
    report.table(rows, ("", "chunks/s", "tokens/s", "target"))
    for run in result.worker:
        if run.lost or run.duplicated:
            whole = False
            print(f"  run lost {len(run.lost)} chunks, duplicated {len(run.duplicated)}")
    return whole


async def measure_guard() -> Agreement:
    """How the bf16 path agrees with fp32 on the guard's full set, whether or not `auto`
    keeps bf16 on this CPU."""
    guard = guard_set(GUARD_DOCUMENTS, GUARD_PASSAGES)
    _, reference = await guard_vectors("fp32", guard)
    _, candidate = await guard_vectors("bf16", guard)
    return agreement(reference, candidate)


def report_guard(found: Agreement) -> None:
    print(f"\nquality guard, bf16 against fp32: {found.chunks} chunks, "
          f"{found.questions} questions")  # fmt: skip
    report.table(
        [
            ("lowest cosine of a chunk", f"{found.min_cosine:.6f}",
             report.against(f">= {MIN_COSINE}", found.min_cosine >= MIN_COSINE)),
            (f"questions with the same top {TOP_K}", f"{found.top_k_unchanged:.3f}",
             report.against(f">= {MIN_TOP_K_UNCHANGED}",
                            found.top_k_unchanged >= MIN_TOP_K_UNCHANGED)),
        ],
        ("", "measured", "target"),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.worker_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chunks", type=int, default=2000, help="short chunks (2000)")
    parser.add_argument("--rag-chunks", type=int, default=500, help="RAG-sized chunks (500)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs the chunks are split into")
    parser.add_argument("--repeats", type=int, default=1, help="runs per phase, best counts")
    parser.add_argument(
        "--fastembed-python", type=Path, default=FASTEMBED_PYTHON,
        help="the Python of fastembed's environment (make bench makes it)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if min(args.chunks, args.rag_chunks, args.jobs, args.repeats) < 1:
        parser.error("all numbers must be >= 1")
    python: Path | None = args.fastembed_python
    if python is not None and not python.is_file():
        print(f"no fastembed environment at {python} (make bench makes it): fastembed skipped")
        python = None
    print(f"{args.jobs} jobs a size, best of {args.repeats}, {os.cpu_count()} CPUs", flush=True)
    bf16 = cpu_computes_bf16()
    results = [
        measure_size("short chunks", args.chunks, SHORT_WORDS, args, python, bf16),
        measure_size(RAG_SIZED, args.rag_chunks, RAG_WORDS, args, python, bf16),
    ]
    whole = [report_size(result) for result in results]
    if bf16:
        report_guard(asyncio.run(measure_guard()))
    else:
        print("\nquality guard: no native bf16 on this CPU; every path runs fp32, the reference")
    if not all(whole):
        print("FAILED: chunks lost or duplicated, or fastembed's vectors differ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
