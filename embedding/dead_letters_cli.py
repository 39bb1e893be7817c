"""`python -m embedding dead-letters` and `python -m embedding redrive`: the dead-letter
stream (embedding/dead_letters.py) for people and scripts, with their exit codes."""

from __future__ import annotations

import json
import sys

import redis.asyncio as aioredis

from embedding.dead_letters import DeadLetter, DeadLetters, Outcome
from embedding.keys import EmbeddingKeys
from embedpipe.tables import print_table

#: Exit codes of the commands (argparse and bad settings exit with 2).
EXIT_OK = 0
EXIT_FAILED = 1


def print_listing(letters: list[DeadLetter], stream: str) -> None:
    """The listing for people: one line per entry and a summary line."""
    if not letters:
        print(f"no dead-lettered jobs in {stream}")
        return
    header = [
        "ENTRY ID",
        "DEAD-LETTERED AT (UTC)",
        "JOB ID",
        "TENANT",
        "TASK",
        "REASON",
        "DELIVERIES",
    ]
    rows = [
        [
            letter.entry_id,
            letter.dead_lettered_at,
            letter.job_id or "-",
            letter.request.tenant_id if letter.request else "-",
            letter.request.task_id if letter.request else "-",
            letter.reason or "-",
            letter.deliveries,
        ]
        for letter in letters
    ]
    stuck = sum(not letter.redrivable for letter in letters)
    summary = f"{len(letters)} dead-lettered in {stream}"
    if stuck:
        summary += f"; {stuck} cannot be re-driven (INVALID_JOB: never a readable job)"
    print_table(rows, header, sys.stdout)
    print(summary)


async def list_command(redis: aioredis.Redis, keys: EmbeddingKeys, *, as_json: bool) -> int:
    """Print the dead-letter stream, as a table or (`as_json`) a JSON list."""
    letters = [letter async for letter in DeadLetters(redis, keys).entries()]
    if as_json:
        print(json.dumps([letter.as_json() for letter in letters], indent=2))
    else:
        print_listing(letters, keys.dead_letter)
    return EXIT_OK


async def redrive_command(
    redis: aioredis.Redis, keys: EmbeddingKeys, entry_ids: list[str], *, every: bool
) -> int:
    """Re-drive the entries named (or, `every`, all of them); 1 if any was not re-driven."""
    dead = DeadLetters(redis, keys)
    if every:
        entry_ids = [letter.entry_id async for letter in dead.entries()]
        if not entry_ids:
            print(f"nothing to re-drive: {keys.dead_letter} is empty")
            return EXIT_OK
    redriven = 0
    for entry_id in entry_ids:
        result = await dead.redrive(entry_id)
        if result.outcome is Outcome.REDRIVEN:
            redriven += 1
            print(
                f"re-driven {entry_id}: job {result.old_job_id} is now job {result.new_job_id} "
                f"(entry {result.new_entry_id} on {keys.jobs})"
            )
        elif result.outcome is Outcome.NOT_FOUND:
            print(
                f"{entry_id}: not in {keys.dead_letter} (already re-driven, or never there)",
                file=sys.stderr,
            )
        else:
            print(
                f"{entry_id}: cannot be re-driven: {result.reason or 'no job in it'}: the entry "
                "was never a readable job, so there is nothing to put back; inspect it with "
                f"`redis-cli XRANGE {keys.dead_letter} {entry_id} {entry_id}` and remove it "
                f"with `redis-cli XDEL {keys.dead_letter} {entry_id}`",
                file=sys.stderr,
            )
    print(f"re-driven {redriven} of {len(entry_ids)}")
    return EXIT_OK if redriven == len(entry_ids) else EXIT_FAILED
