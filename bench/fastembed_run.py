"""The peer's side of bench/worker_throughput.py: fastembed on the same model file.

Run by the bench in an environment of its own (`make bench` makes it under data/bench/
from bench/fastembed-requirements.txt), so the services' environment never holds
fastembed. It imports nothing of ours. Input, a JSON file: {"model_dir", "batch_size",
"warmup": [texts], "texts": [texts], "repeats", "probe": how many vectors to give back}.
Output on stdout, one JSON line: {"seconds": the best run's, "probe": the first
vectors, for the bench to check they are the bundled model's}.

fastembed is pointed at a local directory (`specific_model_path`) holding the bundled
model.onnx and tokenizer.json: nothing is downloaded (HF_HUB_OFFLINE is set as well).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

MODEL_NAME = "embedpipe/all-MiniLM-L6-v2-int8"


def run(job: dict[str, Any]) -> dict[str, Any]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    TextEmbedding.add_custom_model(
        model=MODEL_NAME,
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf=MODEL_NAME),
        dim=384,
        model_file="model.onnx",
    )
    model = TextEmbedding(MODEL_NAME, specific_model_path=job["model_dir"])
    batch_size = int(job["batch_size"])
    list(model.embed(job["warmup"], batch_size=batch_size))
    texts = job["texts"]
    best = float("inf")
    probe: list[list[float]] = []
    for _ in range(int(job["repeats"])):
        start = time.perf_counter()
        vectors = list(model.embed(texts, batch_size=batch_size))
        best = min(best, time.perf_counter() - start)
        probe = [[float(x) for x in v] for v in vectors[: int(job["probe"])]]
    return {"seconds": best, "probe": probe}


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(run(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
