"""How the ingestion service identifies itself to the embedding service."""

from __future__ import annotations

from aiohttp import web

from embedpipe.auth import AUTHORIZATION
from ingestion.http import SETTINGS


def service_metadata(app: web.Application) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying the service key, if one is configured."""
    key = app[SETTINGS].service_key
    return ((AUTHORIZATION, f"Bearer {key}"),) if key else ()
