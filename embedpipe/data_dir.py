"""Where the embedded stack keeps its data (the private Redis and PostgreSQL, the dev keys):
`EMBEDPIPE_DATA_DIR`, else the user's data folder (on Linux `~/.local/share/embedpipe`),
so `embedpipe up` run from any folder finds the same data, and the CLI the same dev key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import platformdirs

VARIABLE = "EMBEDPIPE_DATA_DIR"


def data_dir(env: Mapping[str, str]) -> Path:
    """The stack's data folder for the environment `env`."""
    if chosen := env.get(VARIABLE, "").strip():
        return Path(chosen)
    return platformdirs.user_data_path("embedpipe")
