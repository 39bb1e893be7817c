"""The commands of the `embedpipe` CLI that change a collection other than by uploads:
`reembed` (another model, without downtime; followed until the switch) and `cancel`."""

from __future__ import annotations

import asyncio
from typing import Any, TextIO
from urllib.parse import quote

from embedpipe.cli.api import ApiClient
from embedpipe.cli.ingest import collection_path
from embedpipe.cli.views import print_json
from embedpipe.task_status import TaskStatus

#: Seconds between reads of a re-embed's task.
POLL_S = 1.0


async def reembed(
    client: ApiClient, collection: str, model: str, json_output: bool, out: TextIO
) -> int:
    """Start the re-embed and follow it to its end: 0 once the collection has switched,
    1 if it failed or was cancelled (the collection keeps its model then)."""
    task = await client.call(
        "POST", f"{collection_path(collection)}/reembed", json={"model": model}
    )
    if not json_output:
        print(f"re-embedding {collection!r} with {model} (task {task['task_id']});"
              " search keeps the current model until the switch", file=out, flush=True)  # fmt: skip
    shown = None
    while not TaskStatus(task["status"]).final:
        line = _progress(task)
        if line != shown and not json_output:
            print(line, file=out, flush=True)
            shown = line
        await asyncio.sleep(POLL_S)
        task = await client.call("GET", f"/tasks/{quote(task['task_id'], safe='')}")
    if json_output:
        print_json(task, out)
    elif task["status"] == TaskStatus.COMPLETED:
        print(f"switched: {collection!r} is searched with {model} now,"
              f" {task.get('chunks_total', 0)} chunks", file=out)  # fmt: skip
    else:
        print(f"{task['status']}: {task.get('error_code')}: {task.get('error_message')};"
              " the collection keeps its model", file=out)  # fmt: skip
    return 0 if task["status"] == TaskStatus.COMPLETED else 1


def _progress(task: dict[str, Any]) -> str:
    return (
        f"  {task['status']} {task.get('progress', 0)}%"
        f" ({task.get('chunks_embedded', 0)}/{task.get('chunks_total', 0)} chunks)"
    )


async def cancel(client: ApiClient, task_id: str, json_output: bool, out: TextIO) -> int:
    task = await client.call("POST", f"/tasks/{quote(task_id, safe='')}/cancel")
    if json_output:
        print_json(task, out)
    else:
        print(f"task {task_id} {task['status']}", file=out)
    return 0
