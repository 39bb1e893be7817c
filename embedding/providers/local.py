"""Local ONNX models on onnxruntime, tokenized with `tokenizers`: offline, no PyTorch.

The bundled default is all-MiniLM-L6-v2 with int8 weights (embedpipe/bundled_model.py says
where its files come from). Any directory holding `model.onnx` and `tokenizer.json` can be
configured as another model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from embedding.errors import EmbeddingError, ErrorCode
from embedding.providers.base import EmbedOutput, Vectors
from embedding.providers.token_bound import WordPieceBound
from embedding.settings import ModelSpec
from embedpipe import bundled_model

log = logging.getLogger(__name__)


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
        # One thread: onnxruntime already spreads one run over the cores, and a single
        # thread keeps runs from competing with each other.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"onnx-{spec.name}")
        self._session: ort.InferenceSession | None = None
        self._encoder: Tokenizer | None = None
        self._counter: Tokenizer | None = None
        self._bound: WordPieceBound | None = None
        self._input_names: frozenset[str] = frozenset()
        self._dimensions = spec.dimensions

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_batch_size(self) -> int:
        return self.spec.max_batch_size

    def healthy(self) -> bool:
        return self._session is not None

    async def load(self) -> None:
        if self._session is not None:
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
        pad_id = encoder.token_to_id("[PAD]")
        encoder.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        # Measured on all-MiniLM-L6-v2 int8, 2 cores: graph optimisation makes a second,
        # larger copy of the weights (+170 MB) for no measurable speed-up, and memory
        # patterns, planned per input shape, keep growing as batch shapes vary. Without
        # both, peak RSS fell from 387 to 223 MB at the same chunks/s.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.enable_mem_pattern = False
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        output_dim = session.get_outputs()[0].shape[-1]
        if isinstance(output_dim, int):
            if self.spec.dimensions and self.spec.dimensions != output_dim:
                raise EmbeddingError(
                    ErrorCode.NOT_READY,
                    f"model {self.spec.name!r}: configured dimensions {self.spec.dimensions} "
                    f"but the graph outputs {output_dim}",
                )
            self._dimensions = output_dim
        elif not self.spec.dimensions:
            raise EmbeddingError(
                ErrorCode.NOT_READY,
                f"model {self.spec.name!r}: set 'dimensions', the graph does not fix it",
            )
        self._input_names = frozenset(i.name for i in session.get_inputs())
        self._counter, self._encoder, self._session = counter, encoder, session
        self._bound = bound
        # The first run of a new session is slow (ORT sets up its kernels and threads):
        # pay for it here, before the process reports ready and takes jobs, not inside
        # the first job, where a crash-looping fleet would keep redelivering that one.
        try:
            self.count_tokens(["warm-up"])
            self._embed_blocking(["warm-up"])
        except Exception:
            self._counter = self._encoder = self._session = None  # not loaded after all
            self._bound = None
            raise
        log.info(
            "model loaded name=%s path=%s dimensions=%d",
            self.spec.name,
            model_path,
            self._dimensions,
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
        if self._session is None or self._encoder is None:
            raise EmbeddingError(ErrorCode.NOT_READY, f"model {self.spec.name!r} is not loaded")
        if not texts:
            return EmbedOutput(np.zeros((0, self._dimensions), dtype=np.float32), 0)
        encodings = self._encoder.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(None, feeds)[:1]
        return EmbedOutput(_mean_pool(np.asarray(hidden, dtype=np.float32), mask), int(mask.sum()))

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._session = None


def _mean_pool(hidden: Vectors, mask: npt.NDArray[np.int64]) -> Vectors:
    """Average the token vectors of real (unpadded) tokens."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled: Vectors = (summed / counts).astype(np.float32)
    return pooled
