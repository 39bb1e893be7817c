"""Every process of the one-command stack serves `GET /metrics`, and during an ingest the
figures move as an operator reads them: counters only go up while the work runs, and once
it has settled what one process counts meets what the next one counts."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from embedpipe.task_status import TaskStatus
from ingestion.metrics import TASKS_COUNTED_EVERY_S
from tests.support.processes import REPO
from tests.support.stack import RunningStack, clean_env, running_stack

MODEL = "all-MiniLM-L6-v2"
DOCUMENTS = 8
MODES = ("vector", "keyword", "hybrid")
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
#: A metric name in a PromQL expression.
_PROMQL_METRIC = re.compile(r"\bembedpipe_[a-z_]+")
_METRICS_URL = re.compile(r"(\S+) (http://127\.0\.0\.1:\d+/metrics)")

#: A sample: (metric name, sorted label pairs) -> value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[RunningStack]:
    env = clean_env(tmp_path / "data", EMBEDPIPE_METRICS_PORT="0", EMBEDDING_WORKERS="2")
    async with running_stack(env) as running:
        yield running


def metrics_urls(stack: RunningStack) -> dict[str, str]:
    """Service name -> its metrics URL, as the banner printed them."""
    banner = stack.lines[
        next(i for i, line in enumerate(stack.lines) if "embedpipe is up" in line) :
    ]
    return {m.group(1): m.group(2) for line in banner if (m := _METRICS_URL.search(line))}


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as response:
        assert response.status == 200, url
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and wanted <= set(pairs))


def summed(scrapes: dict[str, Samples], prefix: str, name: str, **labels: str) -> float:
    """`total` over every service whose name starts with `prefix`."""
    return sum(
        total(s, name, **labels) for service, s in scrapes.items() if service.startswith(prefix)
    )


def document(n: int) -> str:
    paragraphs = [
        f"Report {n}, part {p}: the pumping station on canal {n * 7 + p} moved "
        f"{1000 + 37 * n + p} cubic metres of water during the night shift, and the "
        "operators logged the pressure of every valve along the eastern dike."
        for p in range(12)
    ]
    return f"# Station report {n}\n\n" + "\n\n".join(paragraphs)


async def ingest_while_scraping(
    stack: RunningStack, urls: dict[str, str]
) -> tuple[int, dict[str, Samples]]:
    """Ingest DOCUMENTS documents, scraping every process until their tasks end (no
    counter may go back meanwhile), search once in each mode; the collection's chunk count
    and a last scrape of each process."""
    api, headers = stack.ingestion_url + "/api/v1", {"Authorization": f"Bearer {stack.key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{api}/collections", json={"collection_id": "reports"}) as r:
            assert r.status == 201, await r.text()
        tasks = []
        for n in range(DOCUMENTS):
            body = {"document_id": f"report-{n}", "filename": f"r{n}.md", "text": document(n)}
            async with http.post(f"{api}/collections/reports/documents", json=body) as r:
                assert r.status == 202, await r.text()
                tasks.append((await r.json())["task_id"])
        previous: dict[str, Samples] = {}
        async with asyncio.timeout(120):
            while True:
                scrapes = {name: await scrape(http, url) for name, url in urls.items()}
                for name, samples in scrapes.items():
                    for key, value in previous.get(name, {}).items():
                        if key[0].endswith(("_total", "_count")):
                            assert samples.get(key, 0) >= value, (name, key)
                previous = scrapes
                statuses = []
                for task_id in tasks:
                    async with http.get(f"{api}/tasks/{task_id}") as r:
                        statuses.append(TaskStatus((await r.json())["status"]))
                if all(status.final for status in statuses):
                    break
                await asyncio.sleep(0.3)
        assert set(statuses) == {TaskStatus.COMPLETED}
        async with http.get(f"{api}/collections/reports") as r:
            stored_chunks: int = (await r.json())["chunk_count"]
        for mode in MODES:
            search = {"query": "pressure of the valves", "mode": f"SEARCH_MODE_{mode.upper()}"}
            async with http.post(f"{api}/collections/reports/search", json=search) as r:
                assert r.status == 200, await r.text()
        # The tasks gauge is counted every few seconds: wait for it to count them all.
        async with asyncio.timeout(TASKS_COUNTED_EVERY_S + 10):
            while True:
                scrapes = {name: await scrape(http, url) for name, url in urls.items()}
                api_scrape = scrapes["ingestion-api"]
                if total(api_scrape, "embedpipe_tasks", status="completed") == DOCUMENTS:
                    return stored_chunks, scrapes
                await asyncio.sleep(0.5)


async def test_every_process_serves_metrics_that_agree_after_an_ingest(
    stack: RunningStack,
) -> None:
    urls = metrics_urls(stack)
    assert {name.rstrip("-0123456789") for name in urls} == {
        "gateway", "ingestion-api", "embedding-server", "embedding-worker", "ingestion-worker",
    }  # fmt: skip
    assert sum(name.startswith("embedding-worker") for name in urls) == 2
    stored_chunks, scrapes = await ingest_while_scraping(stack, urls)
    assert stored_chunks > DOCUMENTS
    # The ingestion worker chunked and sent every document; the server accepted its jobs.
    assert summed(scrapes, "ingestion-worker", "embedpipe_documents_chunked_total") == DOCUMENTS
    assert summed(scrapes, "ingestion-worker", "embedpipe_chunks_sent_total") == stored_chunks
    accepted = summed(scrapes, "embedding-server", "embedpipe_jobs_accepted_total", model=MODEL)
    assert accepted >= DOCUMENTS
    chunks_in = summed(scrapes, "embedding-server", "embedpipe_chunks_accepted_total", model=MODEL)
    assert chunks_in == stored_chunks
    # The gateway answered 202 to each of them.
    generate = {"route": "/api/v1/embeddings/generate", "status": "202"}
    assert total(scrapes["gateway"], "embedpipe_gateway_requests_total", **generate) == accepted
    # Both workers embedded; together, every job and every chunk, once.
    per_worker = [
        total(s, "embedpipe_jobs_completed_total", model=MODEL)
        for name, s in scrapes.items()
        if name.startswith("embedding-worker")
    ]
    assert sum(per_worker) == accepted
    assert summed(scrapes, "embedding-worker", "embedpipe_chunks_embedded_total") == stored_chunks
    tokens = summed(scrapes, "embedding-worker", "embedpipe_tokens_embedded_total", model=MODEL)
    assert tokens > stored_chunks * 20
    calls = summed(scrapes, "embedding-worker", "embedpipe_model_run_seconds_count", model=MODEL)
    assert 1 <= calls <= stored_chunks
    assert summed(scrapes, "embedding-worker", "embedpipe_batch_size_chunks_count") == calls
    assert summed(scrapes, "embedding-worker", "embedpipe_batch_size_chunks_sum") == stored_chunks
    assert summed(scrapes, "embedding-worker", "embedpipe_batch_padded_tokens_sum") >= tokens
    for failure in ("failed", "redelivered", "dead_lettered"):
        assert summed(scrapes, "embedding-worker", f"embedpipe_jobs_{failure}_total") == 0
    # The queue is empty again.
    server = scrapes["embedding-server"]
    assert total(server, "embedpipe_jobs_queue_depth") == 0
    assert total(server, "embedpipe_jobs_oldest_age_seconds") == 0
    assert total(server, "embedpipe_jobs_dead_letters") == 0
    # Every callback was stored, its lag measured; chunks stored = chunks embedded.
    worker = "ingestion-worker"
    assert summed(scrapes, worker, "embedpipe_callbacks_total", outcome="stored") == accepted
    assert summed(scrapes, worker, "embedpipe_callbacks_total") == accepted
    assert summed(scrapes, worker, "embedpipe_chunks_stored_total") == stored_chunks
    assert summed(scrapes, worker, "embedpipe_callback_lag_seconds_count") == accepted
    lag = summed(scrapes, worker, "embedpipe_callback_lag_seconds_sum")
    assert 0 < lag < 60 * accepted
    stores = summed(
        scrapes, worker, "embedpipe_store_duration_seconds_count", operation="store_embeddings"
    )
    assert stores == accepted
    # The API: every task completed, one search of each mode timed.
    ingestion = scrapes["ingestion-api"]
    assert total(ingestion, "embedpipe_tasks", status="completed") == DOCUMENTS
    assert total(ingestion, "embedpipe_tasks") == DOCUMENTS
    for mode in MODES:
        assert total(ingestion, "embedpipe_search_duration_seconds_count", mode=mode) == 1
    uploads = {"route": "/api/v1/collections/{collection_id}/documents", "status": "202"}
    assert total(ingestion, "embedpipe_ingestion_requests_total", **uploads) == DOCUMENTS
    # The dashboard of docs/ asks only for what the processes serve.
    served = {name for samples in scrapes.values() for name, _ in samples}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    asked = {m for p in panels for t in p["targets"] for m in _PROMQL_METRIC.findall(t["expr"])}
    assert len(asked) >= 20 and asked <= served, asked - served
