"""The ingestion HTTP API: `create_app(settings)` builds it; tests run it on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from aiohttp import web

from embedpipe.embedding.v1 import embedding_service_pb2_grpc as pb_grpc
from embedpipe.http.access_log import KeyRedactingAccessLogger
from embedpipe.http.probes import Check, add_probe_routes
from embedpipe.redis_conn import connect as connect_redis
from ingestion import collections_api, documents_api, search_api
from ingestion.db import connect as connect_db
from ingestion.http import CHANNEL, EMBEDDING, KEYS, POOL, REDIS, SETTINGS, middlewares
from ingestion.keys import IngestionKeys
from ingestion.openapi import openapi_json
from ingestion.settings import IngestionSettings
from ingestion.websocket import events_socket


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[POOL] = await connect_db(settings.database_url)
    app[REDIS] = connect_redis(settings.redis_url)
    app[KEYS] = IngestionKeys(settings.key_prefix)
    channel = grpc.aio.insecure_channel(settings.embedding_grpc_target)
    app[CHANNEL] = channel
    app[EMBEDDING] = pb_grpc.EmbeddingServiceStub(channel)
    yield
    await channel.close()
    await app[REDIS].aclose()
    await app[POOL].close()


def _readiness(app: web.Application) -> dict[str, Check]:
    """Ready when PostgreSQL and Redis answer."""
    return {"postgres": lambda: app[POOL].fetchval("SELECT 1"), "redis": app[REDIS].ping}


def create_app(settings: IngestionSettings) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_upload_bytes + 64 * 1024,
        middlewares=middlewares(settings),
        # A WebSocket's key may be in its URL: any access log must not show it.
        handler_args={"access_log_class": KeyRedactingAccessLogger},
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_resources)
    r = app.router
    r.add_post("/api/v1/collections", collections_api.create_collection)
    r.add_get("/api/v1/collections", collections_api.list_collections)
    r.add_get("/api/v1/collections/{collection_id}", collections_api.get_collection)
    r.add_delete("/api/v1/collections/{collection_id}", collections_api.delete_collection)
    r.add_post("/api/v1/collections/{collection_id}/documents", documents_api.upload_document)
    r.add_get("/api/v1/collections/{collection_id}/documents", documents_api.list_documents)
    r.add_get(
        "/api/v1/collections/{collection_id}/documents/{document_id}", documents_api.get_document
    )
    r.add_delete(
        "/api/v1/collections/{collection_id}/documents/{document_id}",
        documents_api.delete_document,
    )
    r.add_post("/api/v1/collections/{collection_id}/search", search_api.search)
    r.add_get("/api/v1/tasks/{task_id}", documents_api.get_task)
    r.add_get("/api/v1/ws", events_socket)
    add_probe_routes(app, _readiness)
    r.add_get("/openapi.json", openapi_json)
    return app
