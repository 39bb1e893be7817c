"""The local model's fast path (bf16 where the CPU computes it) against its fp32 reference:
the same vectors within cosine 0.99 and the same top-10 search results for 95% of
questions, so that a faster path cannot silently change what users find; and `auto`
keeps bf16 only where it measured faster.

bench/worker_throughput.py runs the same guard on more than 1,000 chunks."""

from __future__ import annotations

from embedding.providers.local import candidate_precisions, cpu_computes_bf16, faster_precision
from tests.support.model_quality import (
    MIN_COSINE,
    MIN_TOP_K_UNCHANGED,
    agreement,
    guard_set,
    guard_vectors,
)


async def test_the_fast_path_keeps_vectors_and_search_results() -> None:
    guard = guard_set(documents=200, extra=100)
    reference_precision, reference = await guard_vectors("fp32", guard)
    # The bf16 path where this CPU has it, whether or not `auto` keeps it here.
    chosen, candidate = await guard_vectors("bf16", guard)
    assert reference_precision == "fp32"
    assert chosen == ("bf16" if cpu_computes_bf16() else "fp32")
    found = agreement(reference, candidate)
    assert found.chunks == 300 and found.questions == 200
    assert found.min_cosine >= MIN_COSINE, found
    assert found.top_k_unchanged >= MIN_TOP_K_UNCHANGED, found


def test_bf16_is_a_candidate_only_where_the_cpu_has_it() -> None:
    assert candidate_precisions("auto", ["FP32", "INT8", "BIN"]) == ("fp32",)
    assert candidate_precisions("auto", ["BF16", "FP32", "INT8"]) == ("fp32", "bf16")
    assert candidate_precisions("fp32", ["BF16", "FP32", "INT8"]) == ("fp32",)
    assert candidate_precisions("bf16", ["BF16", "FP32"]) == ("bf16",)
    assert candidate_precisions("bf16", ["FP32"]) == ("fp32",)


def test_auto_keeps_bf16_only_when_it_ran_clearly_faster() -> None:
    assert faster_precision({"fp32": 0.100, "bf16": 0.060}) == "bf16"
    assert faster_precision({"fp32": 0.100, "bf16": 0.095}) == "fp32"  # within the noise
    assert faster_precision({"fp32": 0.060, "bf16": 0.100}) == "fp32"
    assert faster_precision({"fp32": 0.100}) == "fp32"
