"""`embedpipe`, the command line of the stack (also `python -m embedpipe.cli`): `commands`
parses and dispatches; `api` calls the ingestion API; `files`, `ingest`, `tasks` and
`progress` upload folders and follow their tasks; `views` prints what the API answers."""

from embedpipe.cli.commands import main

__all__ = ["main"]
