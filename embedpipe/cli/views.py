"""The read commands of the `embedpipe` CLI: search, status, collections, documents.

Each fetches one answer from the ingestion API and prints it readably, or as the API's
JSON with `--json`.
"""

from __future__ import annotations

import json
from typing import Any, TextIO
from urllib.parse import quote

from embedpipe.cli.api import ApiClient
from embedpipe.cli.ingest import collection_path
from embedpipe.tables import print_table

SNIPPET_CHARS = 100


def print_json(value: Any, out: TextIO) -> None:
    json.dump(value, out, indent=2, ensure_ascii=False)
    print(file=out, flush=True)


def one_line(text: str, limit: int = SNIPPET_CHARS) -> str:
    """`text` on one line, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _headings(result: dict[str, Any]) -> str:
    metadata = result.get("metadata")
    headings = metadata.get("headings") if isinstance(metadata, dict) else None
    return " > ".join(str(h) for h in headings) if isinstance(headings, list) else ""


async def search(
    client: ApiClient,
    collection: str,
    query: str,
    top_k: int,
    mode: str | None,
    json_output: bool,
    out: TextIO,
) -> int:
    body: dict[str, object] = {"query": query, "top_k": top_k}
    if mode:
        body["mode"] = f"SEARCH_MODE_{mode.upper()}"
    answer = await client.call("POST", f"{collection_path(collection)}/search", json=body)
    if json_output:
        print_json(answer, out)
        return 0
    results = answer.get("results") or []
    if not results:
        print(f"no results in collection {collection!r}", file=out)
    for rank, result in enumerate(results, start=1):
        headings = _headings(result)
        line = f"{rank:>2}. {float(result.get('score', 0.0)):.4f}  {result.get('document_id')}"
        print(line + (f"  [{headings}]" if headings else ""), file=out)
        print(f"    {one_line(str(result.get('text', '')))}", file=out)
    return 0


async def status(client: ApiClient, task_id: str, json_output: bool, out: TextIO) -> int:
    task = await client.call("GET", f"/tasks/{quote(task_id, safe='')}")
    if json_output:
        print_json(task, out)
        return 0
    rows: list[tuple[str, object]] = [
        ("task", task.get("task_id")),
        ("collection", task.get("collection_id")),
        ("document", task.get("document_id")),
        ("status", f"{task.get('status')} ({task.get('progress', 0)}%)"),
        ("chunks", f"{task.get('chunks_embedded', 0)}/{task.get('chunks_total', 0)} embedded"),
        ("created", task.get("created_at")),
        ("updated", task.get("updated_at")),
        ("finished", task.get("finished_at")),
    ]
    if task.get("error_code") or task.get("error_message"):
        rows.append(("error", f"{task.get('error_code')}: {task.get('error_message')}"))
    for name, value in rows:
        if value is not None:
            print(f"{name:<11} {value}", file=out)
    return 0


async def collections(client: ApiClient, json_output: bool, out: TextIO) -> int:
    found = await client.list_all("/collections", "collections")
    if json_output:
        print_json({"collections": found}, out)
        return 0
    if not found:
        print("no collections yet (embedpipe ingest PATH --collection NAME makes one)", file=out)
        return 0
    rows = [
        (c.get("collection_id"), c.get("model"), c.get("dimensions"), c.get("document_count"),
         c.get("chunk_tokens"), c.get("created_at"))
        for c in found
    ]  # fmt: skip
    print_table(rows, ("COLLECTION", "MODEL", "DIMS", "DOCUMENTS", "CHUNK TOKENS", "CREATED"), out)
    return 0


async def documents(client: ApiClient, collection: str, json_output: bool, out: TextIO) -> int:
    found = await client.list_all(f"{collection_path(collection)}/documents", "documents")
    if json_output:
        print_json({"documents": found}, out)
        return 0
    if not found:
        print(f"no documents in collection {collection!r}", file=out)
        return 0
    rows = [
        (d.get("document_id"), d.get("status"), d.get("chunk_count"), d.get("filename"),
         d.get("updated_at"))
        for d in found
    ]  # fmt: skip
    print_table(rows, ("DOCUMENT", "STATUS", "CHUNKS", "FILENAME", "UPDATED"), out)
    return 0
