"""The local model's fast path (bf16 where the CPU computes it) against its fp32 reference:
the same vectors within cosine 0.99 and the same top-10 search results for 95% of
questions, so that a faster path cannot silently change what users find.

bench/worker_throughput.py runs the same guard on more than 1,000 chunks."""

from __future__ import annotations

import openvino as ov

from embedding.providers.local import cpu_precision
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
    chosen, candidate = await guard_vectors("auto", guard)
    assert reference_precision == "fp32"
    # This machine's path: bf16 where OpenVINO says the CPU has it.
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert chosen == ("bf16" if has_bf16 else "fp32")
    found = agreement(reference, candidate)
    assert found.chunks == 300 and found.questions == 200
    assert found.min_cosine >= MIN_COSINE, found
    assert found.top_k_unchanged >= MIN_TOP_K_UNCHANGED, found


def test_a_cpu_without_bf16_runs_fp32() -> None:
    assert cpu_precision("auto", ["FP32", "INT8", "BIN"]) == "fp32"
    assert cpu_precision("auto", ["BF16", "FP32", "INT8"]) == "bf16"
    assert cpu_precision("fp32", ["BF16", "FP32", "INT8"]) == "fp32"
