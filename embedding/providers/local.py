"""Local ONNX models on OpenVINO's CPU runtime, tokenized with `tokenizers`: offline, no
PyTorch.

The bundled default is all-MiniLM-L6-v2 with int8 weights (embedpipe/bundled_model.py says
where its files come from). Any directory holding `model.onnx` and `tokenizer.json` can be
configured as another model.

Precision: where the CPU computes bf16 natively (AVX-512 BF16, AMX), `auto` compiles the
model in fp32 and in bf16, times one run of each at load and keeps bf16 only if it is at
least `BF16_MIN_SPEEDUP` faster. Which wins depends on the CPU, not only on its flags: on
one of this project's 2-core machines bf16 ran 1.7x OpenVINO's fp32 (twice onnxruntime's)
on ~200-token chunks, on another, with the same flags and AVX-512 FP16 besides, 0.6x (its
fp32 as fast as the first one's bf16). `fp32` always runs fp32, the same vectors as
onnxruntime gives; `bf16` always runs bf16 where the CPU has it.
tests/embedding/test_model_precision.py holds the bf16 vectors and search results to the
fp32 ones (bench/worker_throughput.py, on more chunks, prints both speeds side by side).
OpenVINO's dynamic int8 quantization of activations stays off: it moved vectors ten
times further than bf16 for less speed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import openvino as ov
from tokenizers import Tokenizer

from embedding.errors import EmbeddingError, ErrorCode
from embedding.providers.base import EmbedOutput, Vectors
from embedding.providers.token_bound import WordPieceBound
from embedding.settings import ModelSpec
from embedpipe import bundled_model

log = logging.getLogger(__name__)

Precision = Literal["bf16", "fp32"]


#: How much faster than fp32 bf16 must run at load for `auto` to keep it (its vectors
#: differ a little from the reference: not for a speed within the noise).
BF16_MIN_SPEEDUP = 1.1
#: The run timed at load: a typical run of a batch (MAX_TOKENS_PER_RUN tokens).
PROBE_SHAPE = (4, 128)


def candidate_precisions(requested: str, capabilities: Sequence[str]) -> tuple[Precision, ...]:
    """What a model may run in: bf16 only where the CPU computes it natively (and not when
    asked for `fp32`); `auto` times both."""
    if requested == "fp32" or "BF16" not in capabilities:
        return ("fp32",)
    return ("bf16",) if requested == "bf16" else ("fp32", "bf16")


def cpu_computes_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16, AMX), as OpenVINO sees it."""
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def faster_precision(seconds: Mapping[Precision, float]) -> Precision:
    """bf16 if it ran `BF16_MIN_SPEEDUP` times as fast as fp32, else fp32."""
    if "bf16" not in seconds:
        return "fp32"
    if "fp32" not in seconds or seconds["fp32"] >= BF16_MIN_SPEEDUP * seconds["bf16"]:
        return "bf16"
    return "fp32"


def _probe_seconds(compiled: ov.CompiledModel, input_names: frozenset[str]) -> float:
    """The best of three timed runs of PROBE_SHAPE, after one untimed."""
    ids = np.full(PROBE_SHAPE, 1000, dtype=np.int64)
    feeds = _feeds(ids, np.ones_like(ids), input_names)
    request = compiled.create_infer_request()
    request.infer(feeds)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        request.infer(feeds)
        best = min(best, time.perf_counter() - start)
    return best


def _feeds(
    ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64], input_names: frozenset[str]
) -> dict[str, npt.NDArray[np.int64]]:
    """A run's inputs: BERT's token types (all 0) where the graph takes them."""
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


def _compile(core: ov.Core, model: ov.Model, precision: Precision) -> ov.CompiledModel:
    return core.compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
        },
    )


def model_files(spec: ModelSpec) -> tuple[Path, Path]:
    """The (model.onnx, tokenizer.json) pair a local model spec points at."""
    if spec.path:
        directory = Path(spec.path).expanduser()
        return directory / "model.onnx", directory / "tokenizer.json"
    try:
        return bundled_model.model_path(), bundled_model.tokenizer_path()
    except bundled_model.BundledModelMissingError as exc:
        raise EmbeddingError(ErrorCode.NOT_READY, str(exc)) from None


class LocalOnnxProvider:
    """A sentence-embedding model: transformer → mean pooling over real tokens."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        # One thread: OpenVINO already spreads one run over the cores, and a single
        # thread keeps runs from competing with each other (and owns the infer request).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"onnx-{spec.name}")
        self._request: ov.InferRequest | None = None
        self._encoder: Tokenizer | None = None
        self._counter: Tokenizer | None = None
        self._bound: WordPieceBound | None = None
        self._input_names: frozenset[str] = frozenset()
        self._dimensions = spec.dimensions
        self._precision: Precision = "fp32"
        self._pad_id = 0

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_batch_size(self) -> int:
        return self.spec.max_batch_size

    @property
    def precision(self) -> Precision:
        """What the loaded model computes in."""
        return self._precision

    def healthy(self) -> bool:
        return self._request is not None

    async def load(self) -> None:
        if self._request is not None:
            return
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_blocking)

    def _load_blocking(self) -> None:
        model_path, tokenizer_path = model_files(self.spec)
        for path in (model_path, tokenizer_path):
            if not path.is_file():
                raise EmbeddingError(
                    ErrorCode.NOT_READY, f"model {self.spec.name!r}: missing file {path}"
                )
        counter = Tokenizer.from_file(str(tokenizer_path))
        counter.no_truncation()
        counter.no_padding()
        bound = WordPieceBound.of(counter)
        encoder = Tokenizer.from_file(str(tokenizer_path))
        encoder.enable_truncation(max_length=self.spec.max_input_tokens)
        encoder.no_padding()  # each run pads to its own longest text (tokenizer.json: 128)
        pad_id = encoder.token_to_id("[PAD]")
        core = ov.Core()
        model = core.read_model(str(model_path))
        input_names = frozenset(i.any_name for i in model.inputs)
        candidates = candidate_precisions(
            self.spec.precision, core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        )
        precision = candidates[0]
        if len(candidates) > 1:
            # One compiled model at a time: two at once stayed in the worker's memory.
            seconds = {p: _probe_seconds(_compile(core, model, p), input_names) for p in candidates}
            precision = faster_precision(seconds)
            log.info(
                "precision timed model=%s %s chosen=%s",
                self.spec.name,
                " ".join(f"{p}_ms={s * 1000:.1f}" for p, s in seconds.items()),
                precision,
            )
        compiled = _compile(core, model, precision)
        hidden_shape = model.output(0).get_partial_shape()
        output_dim = hidden_shape[hidden_shape.rank.get_length() - 1]
        if output_dim.is_static:
            if self.spec.dimensions and self.spec.dimensions != output_dim.get_length():
                raise EmbeddingError(
                    ErrorCode.NOT_READY,
                    f"model {self.spec.name!r}: configured dimensions {self.spec.dimensions} "
                    f"but the graph outputs {output_dim.get_length()}",
                )
            self._dimensions = output_dim.get_length()
        elif not self.spec.dimensions:
            raise EmbeddingError(
                ErrorCode.NOT_READY,
                f"model {self.spec.name!r}: set 'dimensions', the graph does not fix it",
            )
        self._input_names = input_names
        self._counter, self._encoder = counter, encoder
        self._pad_id = 0 if pad_id is None else pad_id
        self._request, self._precision = compiled.create_infer_request(), precision
        self._bound = bound
        # The first run of a new model is slow (it sets up its kernels and threads):
        # pay for it here, before the process reports ready and takes jobs, not inside
        # the first job, where a crash-looping fleet would keep redelivering that one.
        try:
            self.count_tokens(["warm-up"])
            self._embed_blocking(["warm-up"])
        except Exception:
            self._counter = self._encoder = self._request = None  # not loaded after all
            self._bound = None
            raise
        log.info(
            "model loaded name=%s path=%s dimensions=%d precision=%s",
            self.spec.name,
            model_path,
            self._dimensions,
            precision,
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._counter is None:
            raise EmbeddingError(ErrorCode.NOT_READY, f"model {self.spec.name!r} is not loaded")
        return [len(e.ids) for e in self._counter.encode_batch_fast(list(texts))]

    def token_bound(self, text: str) -> int | None:
        return None if self._bound is None else self._bound(text)

    async def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> EmbedOutput:
        if dimensions is not None and dimensions != self._dimensions:
            raise EmbeddingError(
                ErrorCode.INVALID_ARGUMENT,
                f"dimensions: model {self.spec.name!r} has fixed {self._dimensions} dimensions",
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed_blocking, list(texts))

    def _embed_blocking(self, texts: list[str]) -> EmbedOutput:
        if self._request is None or self._encoder is None:
            raise EmbeddingError(ErrorCode.NOT_READY, f"model {self.spec.name!r} is not loaded")
        if not texts:
            return EmbedOutput(np.zeros((0, self._dimensions), dtype=np.float32), 0)
        encodings = self._encoder.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        vectors = np.empty((len(texts), self._dimensions), dtype=np.float32)
        for part in _runs(order, lengths):
            width = min(
                -(-lengths[part[-1]] // WIDTH_STEP) * WIDTH_STEP, self.spec.max_input_tokens
            )
            ids = np.full((len(part), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(part), width), dtype=np.int64)
            for row, index in enumerate(part):
                ids[row, : lengths[index]] = encodings[index].ids
                mask[row, : lengths[index]] = 1
            hidden = self._request.infer(_feeds(ids, mask, self._input_names))[0]
            vectors[part] = _mean_pool(np.asarray(hidden, dtype=np.float32), mask)
        return EmbedOutput(vectors, sum(lengths))

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._request = None


#: Tokens (rows x the longest row) one model run takes at most. A run's intermediate
#: tensors grow with it (attention with the square of the length): 32 texts of 256 tokens
#: in one run took 330 MB beside the model's 206 MB. In fp32 (twice bf16's intermediates),
#: 1,024 tokens a run peaked at 391 MB on RAG-sized chunks, 512 at 311 MB, at the same
#: speed for RAG-sized and short chunks alike (2026-12-04).
MAX_TOKENS_PER_RUN = 512
#: Runs are padded to a multiple of this many tokens: OpenVINO keeps kernels and buffers
#: per input shape, and every width its own cost 130 MB more over batches of all sizes.
WIDTH_STEP = 16


def _runs(order: list[int], lengths: list[int]) -> list[list[int]]:
    """`order` (indices, shortest text first) cut into runs of at most MAX_TOKENS_PER_RUN."""
    runs: list[list[int]] = []
    for index in order:
        if runs and (len(runs[-1]) + 1) * lengths[index] <= MAX_TOKENS_PER_RUN:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def _mean_pool(hidden: Vectors, mask: npt.NDArray[np.int64]) -> Vectors:
    """Average the token vectors of real (unpadded) tokens."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled: Vectors = (summed / counts).astype(np.float32)
    return pooled
