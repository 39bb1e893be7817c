"""Hybrid search and filters, through the API on the bundled model: keyword queries that
vector search misses (an error code, a function name) are found by hybrid; each result
says which rankings found it; filters keep exactly the chunks they describe."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.support.ingestion_calls import COLLECTIONS, wait_task
from tests.support.tenants import bearer

#: Short documents, one chunk each; two hold a term only its letters can find (an error
#: code, a function name), among documents with terms that look alike.
DOCUMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "exports": (
        "Nightly exports write one CSV file per account to the archive bucket. An export"
        " that runs for more than an hour is stopped, logged as E4021, and tried again.",
        {"team": "data", "year": 2023, "published": "2023-05-02", "source": {"kind": "wiki"}},
    ),
    "ledger": (
        "At month end the finance team closes the books. The job calls zq_flush_ledger2 to"
        " write pending entries before the reports are printed.",
        {
            "team": "finance",
            "year": 2021,
            "published": "2021-11-30",
            "reviewed": True,
            "labels": "billing",
        },
    ),
    # Near misses: other codes and names that look alike to the model's word pieces.
    "quota": (
        "Error E4012 means an upload was larger than the plan allows; the customer should"
        " split the file.",
        {"team": "data", "year": 2024, "published": "2024-04-04"},
    ),
    "webhooks": (
        "Error E4210 appears when a webhook endpoint answers too slowly; the call is retried"
        " three times.",
        {"team": "web", "year": 2022, "published": "2022-03-03"},
    ),
    "resets": (
        "Error E2041 is raised when a password reset link has expired.",
        {"team": "web", "year": 2021, "published": "2021-06-06"},
    ),
    "sync": (
        "The helper zq_sync_ledger2 copies ledger rows to the reporting database every hour.",
        {"team": "finance", "year": 2022, "published": "2022-12-12"},
    ),
    "old-flush": (
        "zq_flush_ledger3 is the old flush routine of the ledger; do not call it from new code.",
        {"team": "finance", "year": 2020, "published": "2020-02-02"},
    ),
    "payments": (
        "Card payments are captured when the order ships. If the bank declines a charge,"
        " the checkout page asks the customer for another card.",
        {
            "team": "finance",
            "year": 2024,
            "published": "2024-02-10",
            "source": {"kind": "blog"},
            "labels": ["billing", "cards"],
        },
    ),
    "outages": (
        "When the site is down, the on-call engineer reads the error logs, finds the failing"
        " service and restarts it. Every outage gets a written review within a week.",
        {"team": "ops", "year": 2022, "published": "2022-08-19", "reviewed": False},
    ),
    "errors": (
        "Error messages shown to users must say what went wrong and what to do next; error"
        " codes alone confuse people and belong in the logs.",
        {"team": "web", "year": 2020, "published": "2020-01-15"},
    ),
    "backups": (
        "Databases are backed up every night and the copies are kept for thirty days. A"
        " restore is rehearsed every quarter on a spare server.",
        {"team": "ops", "year": 2024, "published": "2024-07-01", "source": {"kind": "wiki"}},
    ),
    "onboarding": (
        "New staff get a laptop on their first day, meet their mentor, and read the"
        " security handbook before they are given access to production.",
        {"team": "people", "year": "2019", "published": "2019-09-09"},
    ),
    "functions": (
        "Small functions with clear names make code easier to read. A function should do one"
        " thing, and its name should say what that thing is.",
        {"team": "web", "year": 2023, "published": "2023-10-20", "reviewed": True},
    ),
}


@pytest.fixture
async def library(ingestion_api: str, ingestion_worker: None, http: aiohttp.ClientSession) -> str:
    """A collection holding DOCUMENTS; its search URL."""
    body = {"collection_id": "library", "text_search_config": "english"}
    async with http.post(ingestion_api + COLLECTIONS, json=body, headers=bearer("tenant-a")) as r:
        assert r.status == 201, await r.text()
    documents = f"{ingestion_api}{COLLECTIONS}/library/documents"
    tasks = []
    for document_id, (text, metadata) in DOCUMENTS.items():
        upload = {"document_id": document_id, "text": text, "metadata": metadata}
        async with http.post(documents, json=upload, headers=bearer("tenant-a")) as r:
            assert r.status == 202, await r.text()
            tasks.append((await r.json())["task_id"])
    for task_id in tasks:
        assert (await wait_task(http, ingestion_api, task_id))["status"] == "completed"
    return f"{ingestion_api}{COLLECTIONS}/library/search"


async def search(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], status: int = 200
) -> dict[str, Any]:
    async with http.post(url, json=body, headers=bearer("tenant-a")) as r:
        assert r.status == status, await r.text()
        answer: dict[str, Any] = await r.json()
    return answer


@pytest.mark.parametrize(
    ("query", "holder"), [("E4021", "exports"), ("zq_flush_ledger2", "ledger")]
)
async def test_hybrid_finds_the_words_vector_search_misses(
    library: str, http: aiohttp.ClientSession, query: str, holder: str
) -> None:
    def ids(answer: dict[str, Any]) -> list[str]:
        return [result["document_id"] for result in answer["results"]]

    by_vector = await search(http, library, {"query": query, "mode": "SEARCH_MODE_VECTOR"})
    assert ids(by_vector)[0] != holder, ids(by_vector)  # a look-alike is nearer
    assert all(result["keyword_rank"] is None for result in by_vector["results"])

    by_keyword = await search(http, library, {"query": query, "mode": "SEARCH_MODE_KEYWORD"})
    assert ids(by_keyword)[0] == holder

    hybrid = await search(http, library, {"query": query})  # hybrid is the default
    assert hybrid["mode"] == "SEARCH_MODE_HYBRID"
    assert ids(hybrid)[0] == holder
    top = hybrid["results"][0]
    assert top["keyword_rank"] == 1 and "vector_rank" in top and -1 <= top["similarity"] <= 1
    others = hybrid["results"][1:]
    assert others and all(result["vector_rank"] is not None for result in others)
    scores = [result["score"] for result in hybrid["results"]]
    assert scores == sorted(scores, reverse=True)


async def test_a_meaning_query_still_ranks_by_meaning_in_hybrid(
    library: str, http: aiohttp.ClientSession
) -> None:
    answer = await search(http, library, {"query": "how often are database copies made?"})
    assert answer["results"][0]["document_id"] == "backups"


async def test_keyword_search_stems_as_the_collection_says_and_splits_dotted_names(
    library: str, ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    # english: "restoring" and "restore" are one word.
    found = await search(http, library, {"query": "restoring", "mode": "SEARCH_MODE_KEYWORD"})
    assert [r["document_id"] for r in found["results"]] == ["backups"]

    body = {"collection_id": "verbatim", "text_search_config": "simple"}
    async with http.post(ingestion_api + COLLECTIONS, json=body, headers=bearer("tenant-a")) as r:
        assert r.status == 201 and (await r.json())["text_search_config"] == "simple"
    text = DOCUMENTS["backups"][0] + " The script calls shutil.copytree on /srv/dumps."
    upload = {"document_id": "backups", "text": text}
    async with http.post(
        f"{ingestion_api}{COLLECTIONS}/verbatim/documents", json=upload, headers=bearer("tenant-a")
    ) as r:
        await wait_task(http, ingestion_api, (await r.json())["task_id"])
    verbatim = f"{ingestion_api}{COLLECTIONS}/verbatim/search"
    keyword = {"mode": "SEARCH_MODE_KEYWORD"}
    assert (await search(http, verbatim, {"query": "restoring", **keyword}))["results"] == []
    assert len((await search(http, verbatim, {"query": "restore", **keyword}))["results"]) == 1
    # A dotted or slashed name is found whole and by its parts.
    for words in ("shutil.copytree", "copytree", "/srv/dumps", "dumps", '"shutil copytree"'):
        found = await search(http, verbatim, {"query": words, **keyword})
        assert len(found["results"]) == 1, words
    assert (await search(http, verbatim, {"query": "copytree -restore", **keyword}))[
        "results"
    ] == []


def holders(test: Any) -> set[str]:
    """The documents whose metadata passes `test`."""
    return {document_id for document_id, (_, metadata) in DOCUMENTS.items() if test(metadata)}


FILTERS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("equals", {"conditions": [{"key": "team", "equals": "ops"}]},
     holders(lambda m: m["team"] == "ops")),
    ("any_of", {"conditions": [{"key": "team", "any_of": ["web", "data"]}]},
     holders(lambda m: m["team"] in ("web", "data"))),
    # "2019" is a string: a number range leaves it out, it does not fail.
    ("range of numbers", {"conditions": [{"key": "year", "range": {"gte": 2021, "lt": 2024}}]},
     holders(lambda m: isinstance(m["year"], int) and 2021 <= m["year"] < 2024)),
    ("range of dates", {"conditions": [{"key": "published", "range": {"gt": "2023-06-01"}}]},
     holders(lambda m: m["published"] > "2023-06-01")),
    ("exists", {"conditions": [{"key": "reviewed", "exists": True}]},
     holders(lambda m: "reviewed" in m)),
    ("does not exist", {"conditions": [{"key": "reviewed", "exists": False}]},
     holders(lambda m: "reviewed" not in m)),
    ("a nested key", {"conditions": [{"key": "source.kind", "equals": "wiki"}]},
     holders(lambda m: m.get("source", {}).get("kind") == "wiki")),
    # An array is not equal to one of its items, nor looked into for a nested key.
    ("equals, not an array holding it", {"conditions": [{"key": "labels", "equals": "billing"}]},
     {"ledger"}),
    ("any_of, not an array holding one", {"conditions": [
        {"key": "labels", "any_of": ["billing", "cards"]}]}, {"ledger"}),
    ("equals an array", {"conditions": [{"key": "labels", "equals": ["billing", "cards"]}]},
     {"payments"}),
    ("a nested key exists", {"conditions": [{"key": "source.kind", "exists": True}]},
     holders(lambda m: "source" in m)),
    ("a key under a string or an array",
     {"conditions": [{"key": "labels.0", "exists": True}]}, set()),
    ("no key under a string or an array",
     {"conditions": [{"key": "labels.0", "exists": False}]}, set(DOCUMENTS)),
    ("document ids with a condition",
     {"document_ids": ["ledger", "payments", "outages"],
      "conditions": [{"key": "team", "equals": "finance"}]}, {"ledger", "payments"}),
    ("containment and a condition",
     {"filter": {"team": "web"}, "conditions": [{"key": "year", "range": {"lte": 2020}}]},
     {"errors"}),
]  # fmt: skip


async def test_filters_keep_exactly_the_chunks_they_describe(
    library: str, http: aiohttp.ClientSession
) -> None:
    for name, body, expected in FILTERS:
        for mode in ("SEARCH_MODE_VECTOR", "SEARCH_MODE_HYBRID"):
            answer = await search(
                http, library, {"query": "work", "top_k": 20, "mode": mode, **body}
            )
            assert {r["document_id"] for r in answer["results"]} == expected, (name, mode)


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"mode": "SEARCH_MODE_FUZZY"}, "mode"),
    ({"conditions": [{"key": "year", "range": {}}]}, "conditions[0].range"),
    ({"conditions": [{"key": "a", "exists": True}, {"key": "", "exists": True}]},
     "conditions[1].key"),
    ({"conditions": [{"key": "year", "any_of": []}]}, "conditions[0].any_of"),
    ({"conditions": [{"key": "year", "range": {"gt": True}}]}, "conditions[0].range"),
    ({"conditions": [{"key": "k", "equals": "a\u0000b"}]}, "conditions[0].equals"),
    ({"conditions": [{"key": f"k{i}", "exists": True} for i in range(33)]}, "conditions"),
    ({"keyword_weight": 101}, "keyword_weight"),
    ({"rrf_k": 1001}, "rrf_k"),
]  # fmt: skip


async def test_bad_search_options_are_refused_naming_the_field(
    library: str, http: aiohttp.ClientSession
) -> None:
    for body, field in BAD_OPTIONS:
        answer = await search(http, library, {"query": "q", **body}, status=400)
        named = [
            violation["field"]
            for detail in answer["error"].get("details", [])
            for violation in detail.get("fieldViolations", [])
        ]
        assert named == [field], answer
